//! The three functions' real handlers over one [`Stack`] and a JumpCloud URL, wired as
//! `Lifecycle::from_config` wires them in Lambda: the set-up the end-to-end tests, the portal's
//! browser stack and the local API's tests share.

use crate::{http_event, lambda_event, unique, Stack};
use jit_shared::{
    adapters::setup,
    clock::Clock,
    config::Config,
    domain::policy::parse_policy,
    handlers::{grant::GrantHandler, revoke::RevokeHandler, sync::SyncHandler},
    ports::PolicyChange,
    wiring::{Function, Lifecycle},
};
use std::sync::Arc;

/// A function ARN and role the scheduler accepts; moto runs no target.
const REVOKE_FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:revoke";
const SCHEDULER_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/jit-access-scheduler";

pub struct Functions {
    pub config: Config,
    pub grant: Arc<GrantHandler>,
    pub revoke: Arc<RevokeHandler>,
    pub sync: Arc<SyncHandler>,
    pub schedule_group: String,
    pub event_bus: String,
}

impl Functions {
    /// A schedule group and event bus of their own, `prod-*` requestable, `extra` variables on
    /// top (they win), and `clock` for the grant and revoke functions where given.
    pub async fn new(
        stack: &Stack,
        jumpcloud_url: &str,
        extra: &[(&str, &str)],
        clock: Option<Arc<dyn Clock>>,
    ) -> Self {
        let (schedule_group, event_bus) = (unique("sg"), unique("bus"));
        setup::ensure_schedule_group(&aws_sdk_scheduler::Client::new(&stack.sdk), &schedule_group)
            .await
            .expect("schedule group");
        setup::ensure_event_bus(&aws_sdk_eventbridge::Client::new(&stack.sdk), &event_bus).await.expect("event bus");
        let mut vars = vec![
            ("SCHEDULE_GROUP", schedule_group.as_str()),
            ("EVENT_BUS_NAME", event_bus.as_str()),
            ("REVOKE_FUNCTION_ARN", REVOKE_FUNCTION_ARN),
            ("SCHEDULER_ROLE_ARN", SCHEDULER_ROLE_ARN),
            ("REQUESTABLE_GROUPS", "prod-*"),
        ];
        vars.extend_from_slice(extra);
        let config = stack.config(jumpcloud_url, &vars);
        let lifecycle = |function| {
            let built = Lifecycle::from_config(&stack.sdk, &config, function).expect("lifecycle");
            Arc::new(match &clock {
                Some(clock) => Lifecycle { clock: clock.clone(), ..built },
                None => built,
            })
        };
        Self {
            grant: Arc::new(GrantHandler { lifecycle: lifecycle(Function::Grant) }),
            revoke: Arc::new(RevokeHandler { lifecycle: lifecycle(Function::Revoke) }),
            sync: Arc::new({
                let sync = SyncHandler::from_config(&stack.sdk, &config).expect("sync handler");
                // On the same clock as the lifecycle (the membership oracle compares the two).
                match &clock {
                    Some(clock) => SyncHandler { clock: clock.clone(), ..sync },
                    None => sync,
                }
            }),
            config,
            schedule_group,
            event_bus,
        }
    }

    /// The handlers as the local API invokes them.
    pub fn handlers(&self) -> jit_local_api::Handlers {
        jit_local_api::Handlers { grant: self.grant.clone(), revoke: self.revoke.clone(), sync: self.sync.clone() }
    }

    /// A full sync through the sync handler (`POST /sync`), as an admin would start it.
    pub async fn sync_now(&self) {
        let synced = self.sync.handle(lambda_event(http_event("POST", "/sync", Some("{}")))).await.expect("sync");
        assert_eq!(synced["statusCode"], 200, "sync: {synced}");
    }

    /// Applies an access policy document straight to the policy store (as `jitctl policy apply`).
    pub async fn apply_policy(&self, document: &str) {
        let lifecycle = &self.grant.lifecycle;
        let change = PolicyChange {
            document: document.into(),
            policy: Arc::new(parse_policy(document).expect("a valid policy")),
            previous: None,
            by: "test".into(),
            at: lifecycle.clock.now(),
        };
        lifecycle.policy_store.apply(&change).await.expect("policy applied");
    }
}
