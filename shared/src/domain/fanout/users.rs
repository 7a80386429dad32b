//! Users parts: a range of users each; the part completing the half resolves what managers are left
//! and sends the members parts.

use super::*;

/// A manager named by id or email, as stored.
async fn stored_manager(
    store: &dyn DirectoryStore,
    integration: &str,
    reference: &str,
) -> Result<Option<(String, String)>, SyncError> {
    if reference.contains('@') {
        return Ok(store.user_key_by_email(integration, &canonical_email(reference)).await?);
    }
    Ok(store.user_by_id(integration, reference).await?.map(|u| (u.id, u.email)))
}

/// The stored managers these references name, each looked up once, a few at a time (a run of a
/// million users may leave hundreds of thousands to the part that resolves what is left).
async fn stored_managers(
    store: &dyn DirectoryStore,
    integration: &str,
    references: BTreeSet<String>,
) -> Result<HashMap<String, Option<(String, String)>>, SyncError> {
    stream::iter(references)
        .map(|reference| async move {
            let manager = stored_manager(store, integration, &reference).await?;
            Ok::<_, SyncError>((reference, manager))
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .try_collect()
        .await
}

/// What a users part found stored while it read: its users' digests, the managers they name.
#[derive(Default)]
struct Looked {
    digests: HashMap<String, StoredUserDigest>,
    managers: HashMap<String, Option<(String, String)>>,
    /// The users read so far by id and by canonical email (their place in reading order): a
    /// manager among them is the part's own, not looked up.
    by_id: HashMap<String, usize>,
    by_email: HashMap<String, usize>,
    /// Each user's manager reference (`manager_reference`), in reading order.
    references: Vec<Option<String>>,
}

impl Looked {
    /// Looks up, for one read of users, the stored digests of those the part keeps and the
    /// stored managers they name that are neither among the users read so far nor asked already.
    /// A manager in a later read of the same part is asked for too (it is not known yet), its
    /// answer then unused: the part's own users come first. Users mostly follow their managers in
    /// JumpCloud's id order (ids grow with creation), so that is rare.
    async fn add(&mut self, ctx: &SyncContext<'_>, integration: &str, users: &[SourceUser]) -> Result<(), SyncError> {
        let first = self.references.len();
        for (i, user) in users.iter().enumerate() {
            self.by_id.insert(user.id.clone(), first + i);
            self.by_email.insert(canonical_email(&user.email), first + i);
        }
        self.references.extend(users.iter().map(|u| manager_reference(u, ctx.policy)));
        let kept: Vec<String> = users.iter().filter(|u| kept(ctx, u)).map(|u| u.id.clone()).collect();
        let wanted: BTreeSet<String> = self.references[first..]
            .iter()
            .flatten()
            .filter(|r| !self.by_id.contains_key(r.as_str()) && !self.by_email.contains_key(&canonical_email(r)))
            .filter(|r| !self.managers.contains_key(r.as_str()))
            .cloned()
            .collect();
        let (digests, managers) = futures::try_join!(
            async { Ok::<_, SyncError>(ctx.store.user_digests_by_ids(integration, &kept).await?) },
            stored_managers(ctx.store, integration, wanted)
        )?;
        self.digests.extend(digests);
        self.managers.extend(managers);
        Ok(())
    }
}

/// Whether the sync stores this user (suspended ones only when configured).
fn kept(ctx: &SyncContext<'_>, user: &SourceUser) -> bool {
    ctx.policy.include_suspended_users || !user.is_suspended()
}

/// The users of a part, read a slice at a time ([`FanOut::users_per_read`], whole pages), each
/// slice's stored digests and managers looked up while the next slices are read: so that the
/// worker's JumpCloud slots are not idle while it asks the store.
async fn read_users(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<(Vec<SourceUser>, Looked), SyncError> {
    let last_part = part + 1 == run.user_parts;
    let from = u64::from(part) * run.users_per_part;
    let to = from + run.users_per_part;
    let step = fanout.users_per_read.max(1);
    let starts: Vec<u64> = (from..to).step_by(usize::try_from(step).unwrap_or(usize::MAX)).collect();
    let reads = starts.len();
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Ahead<Vec<SourceUser>>>();
    // The last part's last slice runs to the end: users created since the plan are read too.
    let slices = stream::iter(starts.into_iter().enumerate()).map(|(i, at)| async move {
        let open = last_part && i + 1 == reads;
        Ok(directory.list_users_from(at, (!open).then_some(step.min(to - at))).await?)
    });
    // The slice being looked up and those read ahead of it.
    let places = READS_AHEAD + 1;
    let reading = forward(placed(slices, places).buffered(places), sender);
    let looking = async {
        let (mut listed, mut looked) = (Vec::new(), Looked::default());
        let mut receiver = receiver;
        while let Some(slice) = receiver.next().await {
            looked.add(ctx, &run.integration, &slice.read).await?;
            // Its place frees here: the next slice may be read.
            listed.extend(slice.read);
        }
        Ok::<_, SyncError>((listed, looked))
    };
    let ((), read) = futures::try_join!(reading, looking)?;
    Ok(read)
}

/// Slices of a users part read ahead of the one being looked up.
const READS_AHEAD: usize = 2;

pub(super) async fn users_part(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<PartOutcome, SyncError> {
    let integration = run.integration.as_str();
    let (listed, looked) = read_users(ctx, fanout, run, part, directory).await?;
    let Looked { digests: stored, managers: mut stored_managers_of, by_id, by_email, references } = looked;
    let last_id = listed.iter().map(|u| u.id.clone()).max();

    // Managers among the part's own users first (as the single sync resolves them), then stored.
    let mut managers: Vec<Option<(String, String)>> = vec![None; listed.len()];
    let mut elsewhere: Vec<usize> = Vec::new();
    for (i, reference) in references.iter().enumerate() {
        let Some(reference) = reference else { continue };
        let local = by_id.get(reference.as_str()).or_else(|| by_email.get(&canonical_email(reference))).copied();
        match local {
            Some(m) if m != i => managers[i] = Some((listed[m].id.clone(), canonical_email(&listed[m].email))),
            Some(_) => {}
            None => elsewhere.push(i),
        }
    }
    drop((by_id, by_email));
    // Every manager named elsewhere was looked up while the part read: this asks for none, a
    // guard should that ever change.
    let missing: BTreeSet<String> = elsewhere
        .iter()
        .filter_map(|&i| references[i].clone())
        .filter(|r| !stored_managers_of.contains_key(r))
        .collect();
    stored_managers_of.extend(stored_managers(ctx.store, integration, missing).await?);
    let found = elsewhere.iter().map(|&i| {
        let reference = references[i].as_deref().unwrap_or_default();
        (i, stored_managers_of.get(reference).cloned().flatten())
    });
    let mut unresolved = Vec::new();
    for (i, manager) in found {
        match manager.filter(|(id, _)| *id != listed[i].id) {
            Some(m) => managers[i] = Some(m),
            None => unresolved.push((listed[i].id.clone(), references[i].clone().unwrap_or_default())),
        }
    }
    unresolved.sort();
    drop(stored_managers_of);

    let mut users: Vec<DirectoryUser> = Vec::with_capacity(listed.len());
    let mut excluded: Vec<(String, String)> = Vec::new();
    let listed_count = listed.len() as u64;
    for (user, manager) in listed.into_iter().zip(managers) {
        if !kept(ctx, &user) {
            excluded.push((user.id, canonical_email(&user.email)));
            continue;
        }
        users.push(directory_user(user, manager));
    }
    excluded.sort();
    let mut ids = PartIds { kept: users.iter().map(|u| u.id.clone()).collect(), ..PartIds::default() };
    ids.kept.sort();
    (ids.excluded, ids.excluded_emails) = excluded.into_iter().unzip();

    // A manager named but found neither here nor stored (a suspended one, say) keeps what the
    // store has for it until `resolve_managers`, once every part is in, says what it is: so an
    // unchanged user is not written twice over.
    let unresolved_of: HashMap<&str, &str> = unresolved.iter().map(|(u, r)| (u.as_str(), r.as_str())).collect();
    for user in &mut users {
        let (Some(reference), Some(before)) = (unresolved_of.get(user.id.as_str()), stored.get(&user.id)) else {
            continue;
        };
        let named = |id: &Option<String>, email: &Option<String>| {
            id.as_deref() == Some(*reference) || email.as_deref() == Some(canonical_email(reference).as_str())
        };
        if named(&before.manager_id, &before.manager_email) {
            (user.manager_id, user.manager_email) = (before.manager_id.clone(), before.manager_email.clone());
        }
    }
    drop(unresolved_of);
    let new: Vec<String> = users.iter().filter(|u| !stored.contains_key(&u.id)).map(|u| u.id.clone()).collect();
    let put_users: Vec<DirectoryUser> =
        users.into_iter().filter(|u| stored.get(&u.id).is_none_or(|d| d.hash != content_hash(u))).collect();
    drop(stored);
    let report = PartReport {
        listed: listed_count,
        kept: ids.kept.len() as u64,
        written: put_users.len() as u64,
        deleted: 0,
        last_id,
        unresolved_managers: unresolved,
        ..PartReport::default()
    };
    write(ctx.store, integration, DirectoryChanges { put_users, ..DirectoryChanges::default() }).await?;
    if !run.first_sync && !new.is_empty() {
        fanout.runs.put_new_ids(integration, &run.run_id, NewKind::Users, part, &new).await?;
    }
    let done = fanout.runs.report_part(integration, &run.run_id, PartKind::Users, part, &report, &ids).await?;
    tracing::info!(
        integration,
        run_id = run.run_id,
        part,
        listed = listed_count,
        written = report.written,
        done,
        of = run.user_parts,
        "users part done"
    );
    let mut moved = None;
    if done >= run.user_parts {
        resolve_managers(ctx, fanout, run).await?;
        let next = SyncRun {
            stage: RunStage::Members,
            moved_by: Some(part_name(PartKind::Users, part)),
            members_sent: false,
            ..run.clone()
        };
        if fanout.runs.put_run(&next, Some(RunStage::Users)).await? {
            send_members(fanout, next).await?;
            moved = Some(RunStage::Members);
        }
    }
    Ok(PartOutcome::Done { kind: PartKind::Users, part, moved })
}

/// Managers no users part found (in another part, and not stored when it ran; or not stored at
/// all: suspended users are not, yet the single sync resolves managers among every user it
/// fetched): every user of the run is stored now, and the parts' excluded users are known.
async fn resolve_managers(ctx: &SyncContext<'_>, fanout: &FanOut<'_>, run: &SyncRun) -> Result<(), SyncError> {
    let integration = run.integration.as_str();
    let mut reports = Vec::new();
    for part in 0..run.user_parts {
        let Some(report) = fanout.runs.part_report(integration, &run.run_id, PartKind::Users, part).await? else {
            return Err(SyncError::Fanout(format!("users part {part} counted done without a report")));
        };
        if !report.unresolved_managers.is_empty() {
            reports.push(report);
        }
    }
    if reports.is_empty() {
        return Ok(());
    }
    let mut excluded_by_id: HashMap<String, String> = HashMap::new();
    for part in 0..run.user_parts {
        let ids = fanout.runs.part_ids(integration, &run.run_id, part).await?;
        excluded_by_id.extend(ids.excluded.into_iter().zip(ids.excluded_emails));
    }
    let excluded_by_email: HashMap<&str, &str> =
        excluded_by_id.iter().map(|(id, email)| (email.as_str(), id.as_str())).collect();
    let excluded = |reference: &str| -> Option<(String, String)> {
        if let Some((id, email)) = excluded_by_id.get_key_value(reference) {
            return Some((id.clone(), email.clone()));
        }
        let email = canonical_email(reference);
        excluded_by_email.get(email.as_str()).map(|id| ((*id).to_owned(), email.clone()))
    };
    for report in reports {
        let ids: Vec<String> = report.unresolved_managers.iter().map(|(user, _)| user.clone()).collect();
        let mut users: HashMap<String, DirectoryUser> =
            ctx.store.users_by_ids(integration, &ids).await?.into_iter().map(|u| (u.id.clone(), u)).collect();
        // Each manager looked up once (not one user after another: this one invocation
        // resolves what every part left).
        let wanted: BTreeSet<String> = report.unresolved_managers.iter().map(|(_, r)| r.clone()).collect();
        let managers = stored_managers(ctx.store, integration, wanted).await?;
        let mut put_users = Vec::new();
        for (user_id, reference) in &report.unresolved_managers {
            let Some(mut user) = users.remove(user_id) else { continue };
            let found = managers.get(reference).cloned().flatten().or_else(|| excluded(reference));
            // Nobody (or the user itself): no manager, as the single sync decides.
            let (id, email) = found.filter(|(id, _)| *id != user.id).unzip();
            if (&user.manager_id, &user.manager_email) != (&id, &email) {
                (user.manager_id, user.manager_email) = (id, email);
                put_users.push(user);
            }
        }
        write(ctx.store, integration, DirectoryChanges { put_users, ..DirectoryChanges::default() }).await?;
    }
    Ok(())
}

pub(super) async fn send_members(fanout: &FanOut<'_>, mut run: SyncRun) -> Result<(), SyncError> {
    fanout.queue.send(&messages(&run, PartKind::Members, run.member_parts)).await.map_err(SyncError::Queue)?;
    run.members_sent = true;
    fanout.runs.put_run(&run, Some(RunStage::Members)).await?;
    Ok(())
}
