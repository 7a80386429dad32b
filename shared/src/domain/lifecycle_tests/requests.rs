//! Requests: bad input refused with its kind and nothing changed, the Idempotency-Key, and the
//! in-memory store keeping DynamoDB's conditions.

use super::*;

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error kind, and nothing changes

#[tokio::test]
async fn bad_requests_are_refused_with_their_kind_and_change_nothing() {
    type Edit = fn(&mut GrantRequest);
    let cases: Vec<(&str, Edit, u16)> = vec![
        ("empty reason", |r| r.reason = "   ".into(), 422),
        ("reason too long", |r| r.reason = "x".repeat(1001), 422),
        ("control character in the reason", |r| r.reason = "INC-1\u{7}".into(), 422),
        // "Trojan Source": the reason would display otherwise than it reads.
        ("bidirectional override in the reason", |r| r.reason = "INC-1 \u{202E}lanigiro\u{202C}".into(), 422),
        ("bidirectional isolate in the reason", |r| r.reason = "INC-1 \u{2067}x\u{2069}".into(), 422),
        ("duration below the minimum", |r| r.duration = "30s".parse().unwrap(), 422),
        ("duration above the maximum", |r| r.duration = "13h".parse().unwrap(), 422),
        ("unknown integration", |r| r.integration = Some("other".into()), 404),
        ("unknown user", |r| r.user = Some("nobody@corp.com".into()), 404),
        ("unknown group", |r| r.group = "prod-nothing".into(), 404),
        ("suspended user", |r| r.user = Some("sam@corp.com".into()), 422),
        ("dynamic group", |r| r.group = "prod-auto".into(), 422),
        ("out-of-scope group", |r| r.group = "finance".into(), 422),
        ("missing caller", |r| r.requested_by = "".into(), 422),
    ];
    for (what, edit, status) in cases {
        for standing in [false, true] {
            let members: &[(&str, &str)] = if standing { &[("g1", "u1")] } else { &[] };
            let w = World::new(members);
            let mut request = w.request("alice@corp.com", "2h");
            request.idempotency_key = Some(IdempotencyKey::parse(&format!("key-{what}").replace(' ', "-")).unwrap());
            edit(&mut request);
            let err = request_grant(&w.ctx(), request).await.unwrap_err();
            assert_eq!(status_of(&err), status, "{what}: {err}");
            w.assert_untouched(standing, what);
        }
    }
}

#[tokio::test]
async fn the_error_kinds_name_what_was_wrong() {
    let w = World::new(&[]);
    let err = |edit: fn(&mut GrantRequest)| {
        let mut r = w.request("alice@corp.com", "2h");
        edit(&mut r);
        let ctx = w.ctx();
        async move { request_grant(&ctx, r).await.unwrap_err() }
    };
    assert!(matches!(err(|r| r.user = Some("nobody".into())).await, GrantError::UserNotFound(u) if u == "nobody"));
    assert!(matches!(err(|r| r.group = "nope".into()).await, GrantError::GroupNotFound(_)));
    assert!(matches!(err(|r| r.user = Some("u3".into())).await, GrantError::UserSuspended(_)));
    assert!(matches!(err(|r| r.group = "g2".into()).await, GrantError::GroupNotRequestable { .. }));
    assert!(matches!(err(|r| r.duration = "13h".parse().unwrap()).await, GrantError::DurationOutOfRange { .. }));
    assert!(matches!(err(|r| r.integration = Some("x".into())).await, GrantError::UnknownIntegration(_)));
    // Several integrations: one must be named; a named one works.
    w.integrations.add("other", Arc::new(FakeDirectory::default()));
    let e = err(|_| {}).await;
    assert!(matches!(&e, GrantError::IntegrationRequired(names) if names.len() == 2), "{e}");
    assert!(e.to_string().contains("integration is required"), "{e}");
    let mut r = w.request("alice@corp.com", "2h");
    r.integration = Some("corp".into());
    assert_eq!(request_grant(&w.ctx(), r).await.unwrap().grant.integration, "corp");
    w.integrations.remove("corp");
    w.integrations.remove("other");
    assert!(matches!(err(|_| {}).await, GrantError::NoIntegration));
}

#[tokio::test]
async fn a_busy_membership_answers_conflict_and_records_nothing() {
    let w = World::with_policy(&[], |p| p.lock_attempts = 2);
    w.store.lock_lease(&alice_g1(), "someone-else", t0(), Duration::minutes(3)).await.unwrap();
    let err = request_grant(&w.ctx(), w.request("alice@corp.com", "2h")).await.unwrap_err();
    assert!(matches!(err, GrantError::Busy), "{err}");
    assert_eq!(status_of(&err), 409);
    assert!(w.store.grants().is_empty() && w.store.audit().is_empty());
    assert_eq!(w.jc.member_calls(), 0);
    // A lock whose owner died lapses.
    w.advance(Duration::minutes(3));
    assert_eq!(w.grant("alice@corp.com", "2h").await.status, GrantStatus::Active);
}

// ---------------------------------------------------------------------------------------------
// Idempotency-Key

#[tokio::test]
async fn an_idempotent_replay_returns_the_same_grant_and_adds_nothing() {
    // Mutation caught: not consulting the idempotency record (a second grant would be made).
    let w = World::new(&[]);
    let mut request = w.request("alice@corp.com", "2h");
    request.idempotency_key = Some("7d1c0c8e".into());
    let first = request_grant(&w.ctx(), request.clone()).await.unwrap();
    assert!(!first.replayed);
    let (audit, events, calls) = (w.store.audit().len(), w.bus.published().len(), w.jc.member_calls());
    w.advance(Duration::minutes(1));
    for _ in 0..3 {
        let again = request_grant(&w.ctx(), request.clone()).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.grant, first.grant);
    }
    assert_eq!(w.store.grants().len(), 1);
    assert_eq!((w.store.audit().len(), w.bus.published().len(), w.jc.member_calls()), (audit, events, calls));
    assert_eq!(w.scheduler.schedules.lock().unwrap().len(), 1);

    // The same key for another request: refused. Another caller's key is another key.
    let mut different = request.clone();
    different.duration = "1h".parse().unwrap();
    let err = request_grant(&w.ctx(), different).await.unwrap_err();
    assert!(matches!(err, GrantError::IdempotencyMismatch) && status_of(&err) == 422, "{err}");
    let mut other_caller = request.clone();
    other_caller.requested_by = REVOKER.into();
    assert!(!request_grant(&w.ctx(), other_caller).await.unwrap().replayed);
    // After the record's lifetime, the key is new again.
    w.advance(hours(25));
    assert!(!request_grant(&w.ctx(), request).await.unwrap().replayed);
}

#[tokio::test]
async fn a_request_in_progress_under_the_same_key_is_a_conflict_and_a_failed_one_frees_its_key() {
    let w = World::new(&[]);
    let mut request = w.request("alice@corp.com", "2h");
    request.idempotency_key = Some("k1".into());
    let key = format!("{ADMIN}#k1");
    let claim = IdempotencyClaim {
        key: key.clone(),
        request_hash: "whatever".into(),
        now: t0(),
        expires_at: t0() + hours(24),
        in_progress_until: t0() + Duration::minutes(3),
    };
    // A different request is running under the key: mismatch; the same one: in progress.
    assert_eq!(w.store.begin_idempotent(&claim).await.unwrap(), IdempotencyState::New);
    assert!(matches!(request_grant(&w.ctx(), request.clone()).await, Err(GrantError::IdempotencyMismatch)));
    w.store.abandon_idempotent(&key).await.unwrap();

    *w.jc.add_fault.lock().unwrap() = Some(Fault { error: transient(), applied: false });
    let err = request_grant(&w.ctx(), request.clone()).await.unwrap_err();
    assert_eq!(status_of(&err), 502);
    assert_eq!(w.store.idempotency_records(), 0, "a failed request frees its key");
    *w.jc.add_fault.lock().unwrap() = None;

    let ctx = w.ctx();
    let (first, second) = futures::join!(request_grant(&ctx, request.clone()), request_grant(&ctx, request.clone()));
    let (ok, conflict) = match (first, second) {
        (Ok(g), Err(e)) | (Err(e), Ok(g)) => (g, e),
        (a, b) => panic!("expected one grant and one conflict: {a:?} {b:?}"),
    };
    assert!(matches!(conflict, GrantError::IdempotencyInProgress) && status_of(&conflict) == 409);
    let replay = request_grant(&w.ctx(), request).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.grant.id, ok.grant.id);
}

// ---------------------------------------------------------------------------------------------
// The in-memory store keeps DynamoDB's conditions

#[tokio::test]
async fn the_memory_store_refuses_writes_from_a_lapsed_lock() {
    let w = World::new(&[]);
    let grant = w.grant("alice@corp.com", "1h").await;
    let key = alice_g1();
    let stale = crate::domain::model::LeaseHold { key: key.clone(), owner: "stale".into() };
    w.store.lock_lease(&key, "stale", t0(), Duration::seconds(1)).await.unwrap();
    // Someone else takes the lapsed lock.
    w.store.lock_lease(&key, "fresh", t0() + Duration::seconds(2), Duration::minutes(1)).await.unwrap();
    let ending = crate::ports::Ending {
        grant: grant.clone(),
        status: GrantStatus::Revoked,
        ended_at: t0(),
        last_holder: true,
        membership: None,
    };
    assert!(matches!(w.store.end(&ending, &stale, &[]).await, Err(crate::ports::GrantStoreError::Conflict(_))));
    assert!(matches!(
        w.store.lock_lease(&key, "third", t0() + Duration::seconds(3), Duration::minutes(1)).await,
        Err(crate::ports::GrantStoreError::LeaseBusy { .. })
    ));
    assert_eq!(w.status(&grant.id), GrantStatus::Active);
}

#[tokio::test]
async fn grants_are_listed_newest_first_with_filters_and_pages() {
    let w = World::new(&[]);
    let mut ids = vec![];
    for user in ["alice@corp.com", "bob@corp.com", "alice@corp.com"] {
        ids.push(w.grant(user, "1h").await.id);
        w.advance(Duration::minutes(1));
    }
    w.revoke(&ids[0]).await.unwrap();
    let all = w.store.list(&GrantFilter::default(), 2, None).await.unwrap();
    assert_eq!(all.grants.iter().map(|g| &g.id).collect::<Vec<_>>(), vec![&ids[2], &ids[1]]);
    let rest = w.store.list(&GrantFilter::default(), 2, all.next.as_deref()).await.unwrap();
    assert_eq!((rest.grants.len(), rest.next), (1, None));
    let filter =
        GrantFilter { status: Some(GrantStatus::Active), user_id: Some("u1".into()), ..GrantFilter::default() };
    let alice_active = w.store.list(&filter, 10, None).await.unwrap();
    assert_eq!(alice_active.grants.iter().map(|g| &g.id).collect::<Vec<_>>(), vec![&ids[2]]);
}
