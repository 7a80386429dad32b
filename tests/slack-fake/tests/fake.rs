//! The fake against what Slack's documents say the methods do, over real HTTP.

use reqwest::Client;
use serde_json::{json, Value};
use slack_fake::{sign, Channel, FakeSlack, SlackHandle, SlackUser, Workspace};

const TOKEN: &str = "xoxb-fake-token";

async fn start() -> slack_fake::RunningFakeSlack {
    let workspace = Workspace::new("T0CORP", TOKEN, "signing-secret")
        .with_user(SlackUser::new("U0BOB", "bob", "bob@example.com"))
        .with_user(SlackUser::new("U0CAROL", "carol", "carol@example.com"))
        .with_channel(Channel::new("C0ACCESS1", "access", &["U0BOB", "U0CAROL"]))
        .with_channel(Channel { bot_member: false, ..Channel::new("C0SECRET1", "secret", &["U0BOB"]) });
    FakeSlack::start(workspace).await.unwrap()
}

async fn json_call(url: &str, method: &str, token: Option<&str>, body: Value) -> Value {
    let mut request = Client::new().post(format!("{url}/{method}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "Slack answers 200, with ok true or false");
    response.json().await.unwrap()
}

async fn form_call(url: &str, method: &str, args: &[(&str, &str)]) -> Value {
    Client::new()
        .post(format!("{url}/{method}"))
        .bearer_auth(TOKEN)
        .form(args)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn blocks() -> Value {
    json!([
        { "type": "section", "text": { "type": "mrkdwn", "text": "hello" } },
        { "type": "input", "block_id": "comment", "label": { "type": "plain_text", "text": "Comment" },
          "element": { "type": "plain_text_input", "action_id": "comment" } },
        { "type": "actions", "block_id": "decision", "elements": [
            { "type": "button", "action_id": "approve", "text": { "type": "plain_text", "text": "Approve" }, "value": "id-1" },
        ] },
    ])
}

#[test]
fn signing_follows_slacks_worked_example() {
    // "Verifying requests from Slack": this secret, timestamp and body sign to this value.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[tokio::test]
async fn tokens_are_checked() {
    let slack = start().await;
    let url = slack.url();
    let none = json_call(&url, "chat.postMessage", None, json!({ "channel": "C0ACCESS1", "text": "x" })).await;
    assert_eq!(none, json!({ "ok": false, "error": "not_authed" }));
    let wrong =
        json_call(&url, "chat.postMessage", Some("xoxb-other"), json!({ "channel": "C0ACCESS1", "text": "x" })).await;
    assert_eq!(wrong["error"], "invalid_auth");
    // A token inside a JSON body is not read (it goes in the Authorization header).
    let in_body =
        json_call(&url, "chat.postMessage", None, json!({ "token": TOKEN, "channel": "C0ACCESS1", "text": "x" })).await;
    assert_eq!(in_body["error"], "not_authed");
    assert!(slack.handle().messages().is_empty());
}

#[tokio::test]
async fn messages_are_posted_to_channels_and_direct_messages_then_updated() {
    let slack = start().await;
    let (url, handle) = (slack.url(), slack.handle());
    let posted = json_call(
        &url,
        "chat.postMessage",
        Some(TOKEN),
        json!({ "channel": "U0BOB", "text": "t", "blocks": blocks() }),
    )
    .await;
    assert_eq!(posted["ok"], true, "{posted}");
    let dm = SlackHandle::dm_channel("U0BOB");
    assert_eq!(posted["channel"], dm, "a user id posts to the app's direct message with them");
    let ts = posted["ts"].as_str().unwrap().to_owned();
    let by_name = json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "#access", "text": "t" })).await;
    assert_eq!(by_name["channel"], "C0ACCESS1");
    for (channel, code) in [("C0SECRET1", "not_in_channel"), ("C0NOPE", "channel_not_found")] {
        let refused =
            json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": channel, "text": "t" })).await;
        assert_eq!(refused["error"], code);
    }
    let no_text = json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "C0ACCESS1" })).await;
    assert_eq!(no_text["error"], "no_text");
    let bad =
        json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "C0ACCESS1", "blocks": [{"text": 1}] }))
            .await;
    assert_eq!(bad["error"], "invalid_blocks");

    // chat.update needs the conversation's id: the user's id does not name it.
    let by_user =
        json_call(&url, "chat.update", Some(TOKEN), json!({ "channel": "U0BOB", "ts": ts, "text": "u" })).await;
    assert_eq!(by_user["error"], "channel_not_found");
    let missing = json_call(&url, "chat.update", Some(TOKEN), json!({ "channel": dm, "ts": "1.2", "text": "u" })).await;
    assert_eq!(missing["error"], "message_not_found");
    let updated =
        json_call(&url, "chat.update", Some(TOKEN), json!({ "channel": dm, "ts": ts, "text": "done", "blocks": [] }))
            .await;
    assert_eq!(updated["ok"], true, "{updated}");
    let message = handle.message(&dm, &ts).unwrap();
    assert_eq!((message.text.as_str(), &message.blocks, message.history.len()), ("done", &json!([]), 1));
    assert_eq!(message.history[0].0, "t");
}

#[tokio::test]
async fn users_are_found_by_email_and_id_with_form_arguments() {
    let slack = start().await;
    let url = slack.url();
    let found = form_call(&url, "users.lookupByEmail", &[("email", "Bob@Example.com")]).await;
    assert_eq!(found["user"]["id"], "U0BOB", "{found}");
    let none = form_call(&url, "users.lookupByEmail", &[("email", "nobody@example.com")]).await;
    assert_eq!(none, json!({ "ok": false, "error": "users_not_found" }));
    let info = form_call(&url, "users.info", &[("user", "U0CAROL")]).await;
    assert_eq!(
        (info["user"]["profile"]["email"].as_str(), info["user"]["team_id"].as_str()),
        (Some("carol@example.com"), Some("T0CORP"))
    );
    assert_eq!(form_call(&url, "users.info", &[("user", "U0NOPE")]).await["error"], "user_not_found");
    // users.info takes form arguments only: a JSON body is not read.
    let json_body = json_call(&url, "users.info", Some(TOKEN), json!({ "user": "U0CAROL" })).await;
    assert_eq!(json_body["error"], "invalid_arguments");
}

#[tokio::test]
async fn ephemeral_messages_reach_members_only() {
    let slack = start().await;
    let (url, handle) = (slack.url(), slack.handle());
    let dm = SlackHandle::dm_channel("U0BOB");
    let sent =
        json_call(&url, "chat.postEphemeral", Some(TOKEN), json!({ "channel": dm, "user": "U0BOB", "text": "hi" }))
            .await;
    assert!(sent["message_ts"].is_string(), "{sent}");
    let stranger =
        json_call(&url, "chat.postEphemeral", Some(TOKEN), json!({ "channel": dm, "user": "U0CAROL", "text": "hi" }))
            .await;
    assert_eq!(stranger["error"], "user_not_in_channel", "bob's direct message is not carol's");
    assert_eq!(handle.ephemerals().len(), 1);
}

#[tokio::test]
async fn a_click_is_a_signed_block_actions_payload_with_the_inputs_state() {
    let slack = start().await;
    let (url, handle) = (slack.url(), slack.handle());
    json_call(
        &url,
        "chat.postMessage",
        Some(TOKEN),
        json!({ "channel": "C0ACCESS1", "text": "t", "blocks": blocks() }),
    )
    .await;
    let message = handle.messages().pop().unwrap();
    assert_eq!(message.buttons(), ["approve"]);
    let click = handle.click("U0CAROL", &message, "approve", Some("ok by me"), 1_700_000_123).unwrap();
    assert_eq!(click.timestamp, "1700000123");
    assert_eq!(click.signature, sign("signing-secret", 1_700_000_123, &click.body));
    let payload: Value = serde_json::from_str(&form_urlencoded_payload(&click.body)).unwrap();
    assert_eq!(payload["type"], "block_actions");
    assert_eq!((payload["user"]["id"].as_str(), payload["team"]["id"].as_str()), (Some("U0CAROL"), Some("T0CORP")));
    assert_eq!(payload["container"]["channel_id"], "C0ACCESS1");
    assert_eq!(payload["container"]["message_ts"], message.ts);
    assert_eq!(payload["actions"][0]["action_id"], "approve");
    assert_eq!(payload["actions"][0]["value"], "id-1");
    assert_eq!(payload["state"]["values"]["comment"]["comment"]["value"], "ok by me");
    assert!(handle.click("U0CAROL", &message, "deny", None, 1).is_err(), "no such button");
    assert!(handle.click("U0NOPE", &message, "approve", None, 1).is_err(), "no such user");
    assert!(handle.click("U0BOB", &message, "approve", None, 1).is_ok(), "a member of the channel");
    // A direct message is seen by its user only.
    json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "U0BOB", "text": "t", "blocks": blocks() }))
        .await;
    let dm = handle.messages().pop().unwrap();
    assert!(handle.click("U0BOB", &dm, "approve", None, 1).is_ok());
    assert!(handle.click("U0CAROL", &dm, "approve", None, 1).is_err(), "not carol's conversation");
}

#[tokio::test]
async fn faults_answer_as_slack_does() {
    let slack = start().await;
    let (url, handle) = (slack.url(), slack.handle());
    handle.fail_next("chat.postMessage", "ratelimited");
    let failed = json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "C0ACCESS1", "text": "t" })).await;
    assert_eq!(failed["error"], "ratelimited");
    let next = json_call(&url, "chat.postMessage", Some(TOKEN), json!({ "channel": "C0ACCESS1", "text": "t" })).await;
    assert_eq!(next["ok"], true);
    handle.set_unavailable(true);
    let down = Client::new().post(format!("{url}/users.info")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(down.status(), 503);
    assert_eq!(handle.call_count("chat.postMessage"), 2);
}

fn form_urlencoded_payload(body: &str) -> String {
    form_urlencoded::parse(body.as_bytes()).find(|(k, _)| k == "payload").expect("payload=...").1.into_owned()
}
