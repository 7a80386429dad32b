//! Users and groups from the control endpoints' JSON bodies, in JumpCloud's field names (as seed
//! files and `GET /_sim/orgs/{index}/users` have them): a new object, or a merge patch of an
//! existing one (fields given replace, fields left out stay, `null` clears an optional field).
//! A field the object does not have is a 400, so that a typo cannot pass unnoticed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::ids::new_object_id;
use crate::model::{Group, User, UserState};

type Object = Map<String, Value>;

/// The body as a JSON object.
pub(crate) fn object(body: &[u8]) -> Result<Object, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request("malformed body: expected a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed body: {e}"))),
    }
}

/// A new user: `username` and `email` required; `_id` (or `id`) optional, fresh when absent;
/// `created` defaults to `created`; a `state` without `suspended` / `activated` sets them as
/// [`User::set_state`] does.
pub(crate) fn new_user(mut body: Object, created: String) -> Result<User, ApiError> {
    let id = take_id(&mut body, "_id")?;
    let template = User { id: id.unwrap_or_else(new_object_id).into(), created: created.into(), ..User::new("", "") };
    for required in ["username", "email"] {
        if !body.contains_key(required) {
            return Err(ApiError::bad_request(format!("{required}: required")));
        }
    }
    patched_user(&template, body)
}

/// `user` with `patch` applied. The id cannot change. `state` moves `suspended` / `activated` as
/// [`User::set_state`] does, and so does `suspended` alone (true: `SUSPENDED`; false: back to
/// `ACTIVATED`, or `STAGED` for a user never activated), unless they are given too.
pub(crate) fn patched_user(user: &User, patch: Object) -> Result<User, ApiError> {
    let state = patch.contains_key("state");
    let suspended = patch.get("suspended").and_then(Value::as_bool);
    let flags = patch.contains_key("suspended") || patch.contains_key("activated");
    let mut updated: User = merge(user, patch, "_id", &["manager"])?;
    if state && !flags {
        updated.set_state(updated.state);
    } else if let (false, Some(suspended)) = (state, suspended) {
        let state = match (suspended, updated.activated) {
            (true, _) => UserState::Suspended,
            (false, true) => UserState::Activated,
            (false, false) => UserState::Staged,
        };
        updated.set_state(state);
    }
    for (name, value) in [("username", &updated.username), ("email", &updated.email)] {
        if value.trim().is_empty() {
            return Err(ApiError::bad_request(format!("{name}: must not be empty")));
        }
    }
    Ok(updated)
}

/// A new group: `name` required, `id` optional (fresh when absent).
pub(crate) fn new_group(mut body: Object) -> Result<Group, ApiError> {
    let id = take_id(&mut body, "id")?;
    if !body.contains_key("name") {
        return Err(ApiError::bad_request("name: required"));
    }
    let template = Group { id: id.unwrap_or_else(new_object_id).into(), ..Group::new("") };
    patched_group(&template, body)
}

/// `group` with `patch` applied (`name`, `description`, `email`, `membershipMethod`). The id
/// cannot change.
pub(crate) fn patched_group(group: &Group, patch: Object) -> Result<Group, ApiError> {
    let updated: Group = merge(group, patch, "id", &[])?;
    if updated.name.trim().is_empty() {
        return Err(ApiError::bad_request("name: must not be empty"));
    }
    Ok(updated)
}

/// Takes the id out of a creation body: `_id` or `id` (the same if both), a non-empty string.
fn take_id(body: &mut Object, field: &str) -> Result<Option<String>, ApiError> {
    let ids: Vec<Value> = ["_id", "id"].iter().filter_map(|k| body.remove(*k)).collect();
    match ids.as_slice() {
        [] => Ok(None),
        [Value::String(id)] | [Value::String(id), Value::String(_)]
            if !id.trim().is_empty() && ids.iter().all(|v| v == &ids[0]) =>
        {
            Ok(Some(id.clone()))
        }
        _ => Err(ApiError::bad_request(format!("{field}: must be a non-empty string (and `_id` and `id` the same)"))),
    }
}

/// Applies a merge patch to `base` through its JSON form. `optional` names the fields `base` may
/// leave out when empty.
fn merge<T: Serialize + DeserializeOwned>(
    base: &T,
    patch: Object,
    id_field: &str,
    optional: &[&str],
) -> Result<T, ApiError> {
    let Ok(Value::Object(mut object)) = serde_json::to_value(base) else {
        unreachable!("users and groups serialize to objects")
    };
    for (field, value) in patch {
        if field == "_id" || field == "id" {
            if Some(&value) != object.get(id_field) {
                return Err(ApiError::bad_request(format!("{field}: the id cannot change")));
            }
            continue;
        }
        if !object.contains_key(&field) && !optional.contains(&field.as_str()) {
            let known: Vec<&str> = object.keys().map(String::as_str).chain(optional.iter().copied()).collect();
            return Err(ApiError::bad_request(format!("{field}: not a field here (known: {})", known.join(", "))));
        }
        if value.is_null() {
            object.remove(&field);
        } else {
            object.insert(field, value);
        }
    }
    serde_json::from_value(Value::Object(object)).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(value: Value) -> Object {
        let Value::Object(object) = value else { panic!("not an object") };
        object
    }

    #[test]
    fn new_users_get_defaults_and_consistent_flags() {
        let u = new_user(obj(json!({"username": "a", "email": "a@x"})), "T".into()).unwrap();
        assert!(crate::ids::is_object_id(&u.id));
        assert_eq!((u.state, u.created.as_str()), (UserState::Activated, "T"));
        let u = new_user(
            obj(json!({"_id": "u1", "id": "u1", "username": "a", "email": "a@x", "state": "SUSPENDED"})),
            "T".into(),
        )
        .unwrap();
        assert_eq!(u.id, "u1");
        assert!(u.suspended && u.activated);
        for bad in [
            json!({"username": "a"}),
            json!({"username": "a", "email": "a@x", "_id": "u1", "id": "u2"}),
            json!({"username": "a", "email": "a@x", "_id": 5}),
            json!({"username": "a", "email": "a@x", "password": "x"}),
            json!({"username": "", "email": "a@x"}),
            json!({"username": "a", "email": "a@x", "state": "GONE"}),
        ] {
            assert!(new_user(obj(bad.clone()), "T".into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_merge_and_move_the_state() {
        let user = User { manager: Some("m".into()), ..User::new("a", "a@x") };
        let p = patched_user(&user, obj(json!({"suspended": true, "manager": null, "jobTitle": "CTO"}))).unwrap();
        assert_eq!((p.state, p.manager.as_deref(), p.job_title.as_str()), (UserState::Suspended, None, "CTO"));
        let back = patched_user(&p, obj(json!({"suspended": false}))).unwrap();
        assert_eq!(back.state, UserState::Activated);
        let staged = patched_user(&user, obj(json!({"state": "STAGED"}))).unwrap();
        assert!(!staged.activated && !staged.suspended);
        assert!(patched_user(&user, obj(json!({"_id": "other"}))).is_err());
        assert!(patched_user(&user, obj(json!({"email": null}))).is_err());

        let group = Group::new("g");
        let renamed = patched_group(&group, obj(json!({"name": "h", "membershipMethod": "NOTSET"}))).unwrap();
        assert_eq!((renamed.id, renamed.name.as_str()), (group.id.clone(), "h"));
        assert!(patched_group(&group, obj(json!({"type": "user_group"}))).is_err());
        assert_eq!(new_group(obj(json!({"id": "g1", "name": "x"}))).unwrap().id, "g1");
        assert!(new_group(obj(json!({"description": "no name"}))).is_err());
    }
}
