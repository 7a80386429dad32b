//! `POST /slack/interactions` (the `grant` function): a click on a Slack approval message's
//! Approve or Deny button. The route has no IAM or JWT authorization (Slack cannot sign with
//! SigV4 or hold a token of ours); Slack's own signature is the authentication, checked before
//! anything else of the request is read:
//!
//! 1. Slack approvals off (`SLACK_ENABLED` false, or no secret carries the tag): 404, as if the
//!    route did not exist. A body
//!    over [`MAX_INTERACTION_BYTES`]: 413.
//! 2. `X-Slack-Signature` / `X-Slack-Request-Timestamp` checked against the raw body with the
//!    signing secret, within five minutes of the function's clock (`adapters/slack/signature.rs`):
//!    missing, stale, future or wrong gets 401 and changes nothing.
//! 3. The payload: a click on Approve / Deny of one request, or of one extension of an active
//!    grant (its buttons name the grant and the extension's request time; anything else is
//!    acknowledged and ignored). From a workspace other than the secret's `team_id`, when set: 403.
//! 4. The Slack user is mapped to the approver by email: `users.info` (a deleted user, a bot, a
//!    user of another organization or an unconfirmed email decides nothing) -> the synced
//!    directory's user of the request's integration (`DirectoryStore::user_by_email`; suspended:
//!    nothing) -> a non-admin principal `slack:<Slack user id> as <email>`, the audit's actor.
//! 5. A button decides what it was posted for, and only while that awaits approval: a request's
//!    buttons a request still `pending_approval`, an extension's buttons that same extension still
//!    pending on the active grant (`request::Target`, checked again on every read of the decision).
//!    A click on a message left stale (its update failed) must not approve what the grant became
//!    since (an extension awaiting the same approvers, or a later extension); the message is
//!    updated where it can be and the clicker told instead.
//! 6. The same `request::approve` / `deny` as `POST /grants/{id}/approve|deny`: the same
//!    authorization (`approver_of`: never the requester or the grantee, only the request's or
//!    the extension's approvers), the same audit records and events. Denying needs a comment: the
//!    message's comment box. A refusal is told to the clicker alone (`chat.postEphemeral`);
//!    nothing changes.
//! 7. The messages follow: the events of a decision update them (`adapters/slack`); an approval
//!    short of the count, which publishes no event, updates them here, and so does a click on an
//!    extension found lapsed.
//!
//! Slack waits 3 seconds for the answer. The decision is made before answering (a Lambda function
//! cannot work on after its response): a decision is a few DynamoDB calls, and the last approval a
//! JumpCloud call too, well within that as a rule. When JumpCloud is slow, Slack shows the clicker
//! a timeout, but the decision completes and the message is updated with its outcome; a second
//! click finds it decided (an approval counts once, a denial of a denied request is refused).
//! Every answer to a signed request is 200 with an empty body (Slack shows nothing for it), except
//! the refusals above.

use crate::{
    adapters::slack::{
        blocks::ExtensionState,
        interaction::{self, Decision, Interaction, Verdict},
        signature, SlackApprovals, SlackUser,
    },
    credentials::SlackSecret,
    domain::{
        identity::{Principal, PrincipalUser},
        model::{Grant, GrantStatus, PendingExtension, UserState},
        request::{self, RequestError, Target},
        snapshot::canonical_email,
    },
    handlers::access,
    http::problem,
    wiring::Lifecycle,
};
use lambda_http::{http::StatusCode, Body, Request, Response};

/// The largest interaction request read: an approval message's payload is a few KB.
pub const MAX_INTERACTION_BYTES: usize = 32 * 1024;

/// Logs a Slack call that failed (`event = "slack_failed"`, counted by the template).
fn slack_failed(error: &dyn std::fmt::Display, what: &str) {
    tracing::warn!(event = "slack_failed", error = %error, "Slack: {what}");
}

fn acknowledged() -> Response<Body> {
    Response::builder().status(StatusCode::OK).body(Body::Empty).expect("valid response")
}

pub async fn interactions(lifecycle: &Lifecycle, request: &Request) -> Response<Body> {
    if let Err(p) = access::through_this_api(request, &lifecycle.identity) {
        return p.into_response();
    }
    let Some(slack) = lifecycle.slack.as_deref() else { return not_set_up() };
    let body: &[u8] = match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if body.len() > MAX_INTERACTION_BYTES {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_INTERACTION_BYTES} bytes"),
        );
    }
    let app = match slack.app().await {
        Ok(Some(app)) => app,
        Ok(None) => return not_set_up(),
        Err(e) => {
            slack_failed(&e, "the Slack secret could not be read");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Slack approvals are unavailable: their secret could not be read",
            );
        }
    };
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let now = lifecycle.clock.now();
    let checked = signature::verify(
        &app.signing_secret,
        header(signature::TIMESTAMP_HEADER),
        header(signature::SIGNATURE_HEADER),
        body,
        now,
    );
    if let Err(e) = checked {
        tracing::warn!(event = "slack_signature_refused", reason = %e, "an interaction request is not Slack's");
        return problem(StatusCode::UNAUTHORIZED, format!("not a request from Slack: {e}"));
    }
    // Slack's, from here on.
    let decision = match interaction::parse(body) {
        Ok(Interaction::Decision(decision)) => decision,
        Ok(Interaction::Ignored(what)) => {
            tracing::info!(%what, "Slack interaction ignored");
            return acknowledged();
        }
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some(team) = &app.team_id {
        if decision.team_id.as_ref() != Some(team) {
            tracing::warn!(team = ?decision.team_id, "a Slack interaction from another workspace was refused");
            return problem(StatusCode::FORBIDDEN, "this Slack workspace is not the one set up for approvals");
        }
    }
    decide(lifecycle, slack, &app, &decision).await;
    acknowledged()
}

fn not_set_up() -> Response<Body> {
    problem(StatusCode::NOT_FOUND, "no route POST /slack/interactions: Slack approvals are not set up")
}

/// Who clicked, as an approver: their Slack account's email, if it may stand for them.
fn usable_email(user: &SlackUser) -> Result<String, &'static str> {
    if user.deleted || user.is_bot {
        return Err("this Slack account cannot approve or deny requests");
    }
    if user.is_stranger {
        return Err("a user of another organization cannot approve or deny requests here");
    }
    if user.is_email_confirmed == Some(false) {
        return Err("your Slack account's email address is not confirmed: nothing was done");
    }
    user.profile
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| e.contains('@'))
        .map(str::to_owned)
        .ok_or("your Slack account shows no email address (the app needs users:read.email): nothing was done")
}

/// What a refused decision tells the clicker.
fn refusal(e: &RequestError, verdict: Verdict) -> String {
    match e {
        RequestError::Forbidden(why) => format!("You cannot decide this request: {why}. Nothing was done."),
        RequestError::NotPending(status) => {
            format!("This request is already {}: nothing was done.", status.as_str().replace('_', " "))
        }
        RequestError::Expired(at) => {
            format!("This request timed out at {} without enough approvals.", at.format("%Y-%m-%d %H:%M UTC"))
        }
        RequestError::InvalidComment(_) if verdict == Verdict::Deny => {
            "To deny, write why in the comment box (at most 1000 characters), then press Deny.".to_owned()
        }
        RequestError::InvalidComment(why) => format!("The comment cannot be used: {why}."),
        RequestError::Contended => "The request kept changing while it was being decided: try again.".to_owned(),
        RequestError::Activation(e) => format!("Approved, but the grant could not be activated: {e}"),
        RequestError::NotFound(_) => "This request no longer exists.".to_owned(),
        RequestError::Conflict(why) => format!("Nothing was done: {why}."),
        RequestError::Rejected(e) => format!("Nothing was done: {e}."),
        RequestError::Store(_) => "The decision could not be recorded (a storage error): try again.".to_owned(),
    }
}

/// Maps the clicker to an approver and decides as `POST /grants/{id}/approve|deny` would.
async fn decide(lifecycle: &Lifecycle, slack: &SlackApprovals, app: &SlackSecret, d: &Decision) {
    let tell = |text: String| async move {
        let Some(channel) = &d.channel_id else { return };
        if let Err(e) = slack.api().post_ephemeral(&app.bot_token, channel, &d.user_id, &text).await {
            slack_failed(&e, "could not tell the clicker why nothing was done");
        }
    };
    let user = match slack.api().user_info(&app.bot_token, &d.user_id).await {
        Ok(user) => user,
        Err(e) => {
            slack_failed(&e, "could not look up the Slack user who clicked");
            return tell("Could not look you up in Slack: nothing was done. Try again, or use the API.".into()).await;
        }
    };
    let email = match usable_email(&user) {
        Ok(email) => canonical_email(&email),
        Err(why) => return tell(why.to_owned()).await,
    };
    let grant = match lifecycle.store.get(&d.grant_id).await {
        Ok(Some(grant)) => grant,
        Ok(None) => return tell("This request no longer exists.".into()).await,
        Err(e) => {
            tracing::error!(error = %e, grant_id = %d.grant_id, "a Slack decision could not read its request");
            return tell("The request could not be read: try again.".into()).await;
        }
    };
    // A button decides what it was posted for, nothing else: a click on a message left stale (its
    // update failed) must not approve what the grant has become since, such as an extension
    // awaiting the same approvers, or a later extension. The message is brought up to date
    // instead where the grant still tells how (`request::Target` checks again in the decision).
    let target = match d.extension {
        None if grant.status != GrantStatus::PendingApproval => {
            slack.refresh(app, &grant).await;
            return tell(refusal(&RequestError::NotPending(grant.status), d.verdict)).await;
        }
        None => Target::Request,
        Some(at) if pending_extension(&grant, at).is_none() => {
            return tell("This extension no longer awaits approval: nothing was done.".into()).await;
        }
        Some(at) => Target::Extension(at),
    };
    let found = lifecycle.directory_store.user_by_email(&grant.integration, &email).await;
    let me = match found {
        Ok(Some(user)) if user.state != UserState::Suspended => user,
        Ok(_) => {
            return tell(format!(
                "{email} is not an active user of the directory this request belongs to: nothing was done."
            ))
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, grant_id = %grant.id, "a Slack decision could not read the directory");
            return tell("The directory could not be read: try again.".into()).await;
        }
    };
    let principal = Principal {
        id: format!("slack:{} as {email}", d.user_id),
        admin: false,
        users: vec![PrincipalUser { integration: grant.integration.clone(), id: me.id, email: email.clone() }],
    };
    let ctx = lifecycle.ctx();
    let comment = d.comment.as_deref();
    let decided = match d.verdict {
        Verdict::Approve => request::approve_target(&ctx, &grant.id, &principal, comment, target).await,
        Verdict::Deny => request::deny_target(&ctx, &grant.id, &principal, comment, target).await,
    };
    match decided {
        Ok(now) => {
            tracing::info!(grant_id = %now.id, actor = %principal.id, status = now.status.as_str(), "decided in Slack");
            // An approval short of the count publishes no event: the messages are updated here.
            match target {
                Target::Request if now.status == GrantStatus::PendingApproval => slack.refresh(app, &now).await,
                Target::Extension(at) => {
                    if let Some(ext) = pending_extension(&now, at) {
                        slack.refresh_extension(app, &now, ext, ExtensionState::Awaiting).await;
                    }
                }
                _ => {}
            }
        }
        Err(e) => {
            tracing::info!(grant_id = %grant.id, actor = %principal.id, reason = %e, "a decision in Slack was refused");
            // An extension found past its approval timeout: its messages say so.
            if let (RequestError::Expired(_), Target::Extension(at)) = (&e, target) {
                if let Some(ext) = pending_extension(&grant, at) {
                    let state = if grant.status == GrantStatus::Active && ctx.clock.now() < grant.expiry() {
                        ExtensionState::Lapsed
                    } else {
                        ExtensionState::GrantEnded
                    };
                    slack.refresh_extension(app, &grant, ext, state).await;
                }
            }
            tell(refusal(&e, d.verdict)).await;
        }
    }
}

/// The grant's pending extension asked for at `at`, while the grant is active.
fn pending_extension(grant: &Grant, at: chrono::DateTime<chrono::Utc>) -> Option<&PendingExtension> {
    grant.pending_extension.as_ref().filter(|p| p.at == at && grant.status == GrantStatus::Active)
}
