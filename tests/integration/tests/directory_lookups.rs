//! The directory lookups of the real adapter (`DynamoStore`) against moto's server, over a
//! directory written by the real `sync` handler from the JumpCloud simulator.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{http_event, http_response, lambda_event, Stack};
use jit_shared::{
    adapters::dynamodb::DynamoStore,
    domain::model::{content_hash, DirectoryChanges, DirectoryUser, UserState},
    handlers::sync::SyncHandler,
    ports::DirectoryStore,
};
use jumpcloud_sim::{Group, Org, RunningSimulator, Simulator, User};
use serde_json::Value;

const KEY: &str = "corp-admin-key-5a2f91";
const USERS: usize = 250;

struct Seeded {
    /// JumpCloud ids, by index.
    users: Vec<String>,
    /// Users 0-149.
    big: String,
    /// Users 0-2.
    small: String,
    /// No members.
    empty: String,
}

/// 250 users with mixed-case usernames (`User000`...), `big` (users 0-149), `small` (0-2), `empty`.
fn seeded_org() -> (Org, Seeded) {
    let mut org = Org::new(KEY);
    let users: Vec<String> = (0..USERS)
        .map(|i| org.add_user(User::new(format!("User{i:03}"), format!("user{i:03}@corp.example"))))
        .collect();
    let big = org.add_group(Group::new("big"));
    let small = org.add_group(Group::new("small"));
    let empty = org.add_group(Group::new("empty"));
    for u in &users[..150] {
        org.add_member(&big, u);
    }
    for u in &users[..3] {
        org.add_member(&small, u);
    }
    (org, Seeded { users, big, small, empty })
}

async fn sync(stack: &Stack, sim: &RunningSimulator) -> Value {
    let handler = SyncHandler::from_config(&stack.sdk, &stack.config(&sim.url(), &[])).unwrap();
    let response = handler.handle(lambda_event(http_event("POST", "/sync", Some("{}")))).await.unwrap();
    let (status, body, _) = http_response(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["integrations"][0]["status"], "succeeded", "{body}");
    body["integrations"][0].clone()
}

async fn synced() -> (Stack, RunningSimulator, Seeded, DynamoStore) {
    let stack = Stack::new().await;
    let (org, seeded) = seeded_org();
    let sim = Simulator::start(vec![org]).await.unwrap();
    stack.integration("corp", KEY).await;
    sync(&stack, &sim).await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    (stack, sim, seeded, store)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn ids(users: Vec<DirectoryUser>) -> Vec<String> {
    sorted(users.into_iter().map(|u| u.id).collect())
}

/// Removes attributes from a stored item, as an older sync would have written it.
async fn strip(stack: &Stack, pk: &str, sk: &str, attributes: &str) {
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .update_expression(format!("REMOVE {attributes}"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn users_are_found_by_id_alone_and_in_batches_of_more_than_a_hundred() {
    let (_stack, _sim, seeded, store) = synced().await;
    let user = store.user_by_id("corp", &seeded.users[7]).await.unwrap().expect("user 7");
    assert_eq!((user.email.as_str(), user.username.as_str()), ("user007@corp.example", "User007"));
    assert!(store.user_by_id("corp", "000000000000000000000000").await.unwrap().is_none());
    assert!(store.user_by_id("other", &seeded.users[7]).await.unwrap().is_none(), "per integration");

    // 250 ids, one of them twice, plus two unknown: three batches (100, 100, 51 keys).
    let mut asked = seeded.users.clone();
    asked.push(seeded.users[0].clone());
    asked.push("000000000000000000000000".into());
    asked.push("ffffffffffffffffffffffff".into());
    let found = store.users_by_ids("corp", &asked).await.unwrap();
    assert_eq!(found.len(), USERS, "every stored user once; unknown ids skipped");
    assert_eq!(ids(found), sorted(seeded.users.clone()));
    assert!(store.users_by_ids("corp", &[]).await.unwrap().is_empty());
    assert!(store.users_by_ids("other", &seeded.users[..3]).await.unwrap().is_empty());

    // The same batches, projected to id and email.
    let emails = store.user_emails_by_ids("corp", &asked).await.unwrap();
    assert_eq!(emails.len(), USERS, "every stored user once; unknown ids skipped");
    for (i, id) in seeded.users.iter().enumerate() {
        assert_eq!(emails.get(id).map(String::as_str), Some(format!("user{i:03}@corp.example").as_str()));
    }
    assert!(store.user_emails_by_ids("corp", &[]).await.unwrap().is_empty());
    assert!(store.user_emails_by_ids("other", &seeded.users[..3]).await.unwrap().is_empty());
}

#[tokio::test]
async fn usernames_are_found_case_insensitively_through_the_index() {
    let (stack, sim, seeded, store) = synced().await;
    for name in ["User042", "user042", "USER042", " user042 "] {
        let user = store.user_by_username("corp", name).await.unwrap();
        assert_eq!(user.map(|u| u.id).as_ref(), Some(&seeded.users[42]), "{name:?}");
    }
    let user = stack.item("DIR#corp#USER", &seeded.users[42]).await.unwrap();
    assert_eq!(user["gsi2pk"].as_s().unwrap(), "USERNAME#corp#user042", "stored canonical");
    assert_eq!(user["username"].as_s().unwrap(), "User042", "shown as JumpCloud spells it");
    assert!(store.user_by_username("corp", "User04").await.unwrap().is_none(), "whole names only");
    assert!(store.user_by_username("other", "user042").await.unwrap().is_none(), "per integration");

    // A rename in JumpCloud moves the user in the index with the next sync.
    sim.handle().org(0).update_user(&seeded.users[42], |u| u.username = "Renamed.User".into()).unwrap();
    sync(&stack, &sim).await;
    assert!(store.user_by_username("corp", "user042").await.unwrap().is_none());
    let renamed = store.user_by_username("corp", "renamed.user").await.unwrap().unwrap();
    assert_eq!(renamed.id, seeded.users[42]);
}

#[tokio::test]
async fn memberships_are_listed_by_group_and_by_user() {
    let (_stack, _sim, seeded, store) = synced().await;
    assert_eq!(sorted(store.group_members("corp", &seeded.big).await.unwrap()), sorted(seeded.users[..150].to_vec()));
    assert_eq!(sorted(store.group_members("corp", &seeded.small).await.unwrap()), sorted(seeded.users[..3].to_vec()));
    assert!(store.group_members("corp", &seeded.empty).await.unwrap().is_empty());
    assert!(store.group_members("other", &seeded.big).await.unwrap().is_empty());

    // A span of groups in one query (paged: 153 keys), each group's members whole, none beyond.
    let mut spanned = [seeded.big.clone(), seeded.small.clone(), seeded.empty.clone()];
    spanned.sort();
    let all = store.memberships_of_groups("corp", &spanned[0], &spanned[2]).await.unwrap();
    assert_eq!(all.len(), 153);
    let members_of = |found: &[(String, String)], group: &str| {
        sorted(found.iter().filter(|(g, _)| g == group).map(|(_, u)| u.clone()).collect())
    };
    assert_eq!(members_of(&all, &seeded.big), sorted(seeded.users[..150].to_vec()));
    assert_eq!(members_of(&all, &seeded.small), sorted(seeded.users[..3].to_vec()));
    let one = store.memberships_of_groups("corp", &seeded.small, &seeded.small).await.unwrap();
    assert_eq!((one.len(), members_of(&one, &seeded.small)), (3, sorted(seeded.users[..3].to_vec())));
    assert!(store.memberships_of_groups("other", &spanned[0], &spanned[2]).await.unwrap().is_empty());

    assert_eq!(
        sorted(store.groups_of("corp", &seeded.users[1]).await.unwrap()),
        sorted(vec![seeded.big.clone(), seeded.small.clone()])
    );
    assert_eq!(store.groups_of("corp", &seeded.users[100]).await.unwrap(), vec![seeded.big.clone()]);
    assert!(store.groups_of("corp", &seeded.users[200]).await.unwrap().is_empty());
    assert!(store.groups_of("other", &seeded.users[1]).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_user_is_listed() {
    let (_stack, _sim, seeded, store) = synced().await;
    let users = store.list_users("corp").await.unwrap();
    assert_eq!(users.len(), USERS);
    assert!(users.windows(2).all(|w| w[0].id < w[1].id), "by id");
    assert_eq!(ids(users), sorted(seeded.users.clone()));
    assert!(store.list_users("other").await.unwrap().is_empty());
}

/// A users part compares JumpCloud's users with the stored ones by content hash and manager,
/// read projected: the same hash the sync wrote, the manager as stored.
#[tokio::test]
async fn user_digests_carry_the_written_hash_and_the_stored_manager() {
    let stack = Stack::new().await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    let user = |i: usize, manager: Option<usize>| DirectoryUser {
        id: format!("{i:024x}"),
        email: format!("user{i}@corp.example"),
        username: format!("user{i}"),
        first_name: Some(format!("First{i}")),
        last_name: None,
        job_title: None,
        department: Some("Engineering".into()),
        location: None,
        employee_type: None,
        manager_id: manager.map(|m| format!("{m:024x}")),
        manager_email: manager.map(|m| format!("user{m}@corp.example")),
        state: UserState::Activated,
    };
    let users: Vec<DirectoryUser> = (0..150).map(|i| user(i, (i > 0).then_some(i / 8))).collect();
    let changes = DirectoryChanges { put_users: users.clone(), ..DirectoryChanges::default() };
    store.apply_changes("corp", &changes).await.unwrap();

    let mut asked: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    asked.push("ffffffffffffffffffffffff".into());
    let digests = store.user_digests_by_ids("corp", &asked).await.unwrap();
    assert_eq!(digests.len(), users.len(), "two batches; the unknown id skipped");
    for u in &users {
        let digest = &digests[&u.id];
        assert_eq!(digest.hash, content_hash(u), "{}", u.id);
        assert_eq!((&digest.manager_id, &digest.manager_email), (&u.manager_id, &u.manager_email));
    }
    assert!(digests[&users[0].id].manager_id.is_none());
    assert_eq!(digests[&users[9].id].manager_email.as_deref(), Some("user1@corp.example"));
    assert!(store.user_digests_by_ids("other", &asked).await.unwrap().is_empty());
}

/// Users big enough that the users partition spans several 1 MB query pages.
#[tokio::test]
async fn listing_and_batch_reads_follow_dynamodb_pages() {
    let stack = Stack::new().await;
    let store = DynamoStore::new(stack.dynamodb.clone(), &stack.table);
    let padding = "x".repeat(4000);
    let users: Vec<DirectoryUser> = (0..400)
        .map(|i| DirectoryUser {
            id: format!("{i:024x}"),
            email: format!("user{i}@corp.example"),
            username: format!("user{i}"),
            first_name: None,
            last_name: None,
            job_title: Some(padding.clone()),
            department: None,
            location: None,
            employee_type: None,
            manager_id: None,
            manager_email: None,
            state: UserState::Activated,
        })
        .collect();
    let changes = DirectoryChanges { put_users: users.clone(), ..DirectoryChanges::default() };
    store.apply_changes("corp", &changes).await.unwrap();

    let first_page = stack
        .dynamodb
        .query()
        .table_name(&stack.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("DIR#corp#USER".into()))
        .send()
        .await
        .unwrap();
    assert!(first_page.last_evaluated_key.is_some(), "the partition spans more than one page");
    assert!(first_page.items().len() < users.len());

    let listed = store.list_users("corp").await.unwrap();
    assert_eq!(listed, users, "every page, in id order");
    let all_ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let found = store.users_by_ids("corp", &all_ids).await.unwrap();
    assert_eq!(ids(found), all_ids);
}

/// Items written before `gsi2pk` (users) and `gsi1pk` (memberships) existed are not in those
/// indexes; the next sync rewrites them, once, and removes vanished ones as before.
#[tokio::test]
async fn items_of_the_older_layout_are_rewritten_by_the_next_sync() {
    let (stack, sim, seeded, store) = synced().await;
    let (user, kept, vanishing) = (&seeded.users[5], &seeded.users[1], &seeded.users[2]);
    strip(&stack, "DIR#corp#USER", user, "gsi2pk, gsi2sk").await;
    strip(&stack, "DIR#corp#MEMBER", &format!("{}#{kept}", seeded.small), "gsi1pk, gsi1sk").await;
    strip(&stack, "DIR#corp#MEMBER", &format!("{}#{vanishing}", seeded.small), "gsi1pk, gsi1sk").await;
    assert!(store.user_by_username("corp", "user005").await.unwrap().is_none(), "not in gsi2 yet");
    assert_eq!(store.groups_of("corp", kept).await.unwrap(), vec![seeded.big.clone()], "not in gsi1 yet");
    // Lookups that do not use the new attributes find the old items all the same.
    assert_eq!(store.user_by_id("corp", user).await.unwrap().unwrap().username, "User005");
    assert!(store.group_members("corp", &seeded.small).await.unwrap().contains(kept));

    sim.handle().org(0).remove_member(&seeded.small, vanishing).unwrap();
    let report = sync(&stack, &sim).await;
    assert_eq!(
        (report["written"].as_u64(), report["deleted"].as_u64()),
        (Some(2), Some(1)),
        "the outdated user and membership put again, the vanished membership deleted: {report}"
    );
    assert_eq!(store.user_by_username("corp", "USER005").await.unwrap().map(|u| u.id).as_ref(), Some(user));
    assert_eq!(
        sorted(store.groups_of("corp", kept).await.unwrap()),
        sorted(vec![seeded.big.clone(), seeded.small.clone()])
    );
    assert!(stack.item("DIR#corp#MEMBER", &format!("{}#{vanishing}", seeded.small)).await.is_none());
    assert_eq!(store.groups_of("corp", vanishing).await.unwrap(), vec![seeded.big.clone()]);

    let report = sync(&stack, &sim).await;
    assert_eq!((report["written"].as_u64(), report["deleted"].as_u64()), (Some(0), Some(0)), "rewritten once");
}
