//! Users parts: a range of users each; the part completing the half resolves what managers are left
//! and sends the members parts.

use super::*;

/// The stored managers these references name, as the store's id key and email index find
/// them. A reference by id is read with the others in batches; a reference by email, in the
/// email index, one query each, unless `hints` names the stored user it found last time (the
/// manager a user naming it has stored): read in the same batches, that user answers when its
/// email is still the reference's. A re-sync of a million users then asks the index for the
/// managers that changed, not for all of them (~10,000 a users part otherwise).
async fn stored_managers(
    store: &dyn DirectoryStore,
    integration: &str,
    references: BTreeSet<String>,
    hints: &HashMap<String, String>,
) -> Result<HashMap<String, Option<(String, String)>>, SyncError> {
    let (by_email, by_id): (Vec<String>, Vec<String>) = references.into_iter().partition(|r| r.contains('@'));
    let hinted: BTreeSet<&str> = by_email
        .iter()
        .filter_map(|r| hints.get(r))
        .map(String::as_str)
        .chain(by_id.iter().map(String::as_str))
        .collect();
    let hinted: Vec<String> = hinted.into_iter().map(str::to_owned).collect();
    // No ids, no calls (the port's contract).
    let emails = store.user_emails_by_ids(integration, &hinted).await?;
    let mut found: HashMap<String, Option<(String, String)>> = by_id
        .into_iter()
        .map(|id| {
            let manager = emails.get(&id).map(|email| (id.clone(), email.clone()));
            (id, manager)
        })
        .collect();
    let mut asked = Vec::new();
    for reference in by_email {
        let email = canonical_email(&reference);
        let confirmed = hints.get(&reference).filter(|id| emails.get(*id) == Some(&email));
        match confirmed {
            Some(id) => {
                found.insert(reference, Some((id.clone(), email)));
            }
            None => asked.push((reference, email)),
        }
    }
    let looked_up: Vec<(String, Option<(String, String)>)> = stream::iter(asked)
        .map(|(reference, email)| async move {
            let manager = store.user_key_by_email(integration, &email).await?;
            Ok::<_, SyncError>((reference, manager))
        })
        .buffer_unordered(STORE_CONCURRENCY)
        .try_collect()
        .await?;
    found.extend(looked_up);
    Ok(found)
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
            .filter(|r| self.local(r).is_none())
            .filter(|r| !self.managers.contains_key(r.as_str()))
            .cloned()
            .collect();
        // The digests first: the managers they name are the hints for the managers' lookup.
        let digests = ctx.store.user_digests_by_ids(integration, &kept).await?;
        let hints = hints(users, &self.references[first..], &digests, &wanted);
        let managers = stored_managers(ctx.store, integration, wanted, &hints).await?;
        self.digests.extend(digests);
        self.managers.extend(managers);
        Ok(())
    }
}

/// For each wanted manager reference by email, the id of the manager that a user naming it has
/// stored under that email (what the email index found for it last time).
fn hints(
    users: &[SourceUser],
    references: &[Option<String>],
    digests: &HashMap<String, StoredUserDigest>,
    wanted: &BTreeSet<String>,
) -> HashMap<String, String> {
    let mut hints = HashMap::new();
    for (user, reference) in users.iter().zip(references) {
        let Some(reference) = reference.as_ref().filter(|r| r.contains('@') && wanted.contains(*r)) else { continue };
        if hints.contains_key(reference) {
            continue;
        }
        let Some(stored) = digests.get(&user.id) else { continue };
        if let (Some(id), Some(email)) = (&stored.manager_id, &stored.manager_email) {
            if *email == canonical_email(reference) {
                hints.insert(reference.clone(), id.clone());
            }
        }
    }
    hints
}

/// Whether the sync stores this user (suspended ones only when configured).
fn kept(ctx: &SyncContext<'_>, user: &SourceUser) -> bool {
    ctx.policy.include_suspended_users || !user.is_suspended()
}

/// How a user's manager is found, as the single sync resolves it: among the part's users (by
/// place in reading order), else stored; or the user names nobody (or itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Nobody,
    Part(usize),
    Stored,
    /// Named, but neither among the users read so far nor stored.
    NotFound,
}

impl Looked {
    /// The place of the user read so far that a manager reference names, by id or email.
    fn local(&self, reference: &str) -> Option<usize> {
        self.by_id.get(reference).or_else(|| self.by_email.get(&canonical_email(reference))).copied()
    }

    /// Where the manager of the user at `place` is found, with what has been read so far.
    fn via(&self, place: usize, user_id: &str) -> Via {
        let Some(reference) = &self.references[place] else { return Via::Nobody };
        match self.local(reference) {
            Some(m) if m != place => Via::Part(m),
            Some(_) => Via::Nobody,
            None => match self.managers.get(reference.as_str()) {
                Some(Some((id, _))) if id != user_id => Via::Stored,
                _ => Via::NotFound,
            },
        }
    }
}

/// A users part as its slices come: each slice's users decided and written while the next
/// slices are read, so that the worker's JumpCloud slots are not idle while it decides and
/// writes (nor its store while it reads). A user whose manager is not found yet (it may be in a
/// later read) waits for the end of the part.
#[derive(Default)]
struct Deciding {
    /// Every user read, by place: its id and canonical email (a manager's, as stored).
    keys: Vec<(String, String)>,
    /// Kept users decided as read, and how their manager was found: checked again at the end,
    /// for a later read may hold the manager as one of the part's own users, which come first.
    decided: Vec<(usize, Via)>,
    /// Kept users whose manager was not found when read.
    deferred: Vec<(usize, SourceUser)>,
    excluded: Vec<(String, String)>,
    kept: Vec<String>,
    /// Kept users new to the store...
    new: Vec<String>,
    /// ...not written, but on an integration's first sync, until recorded as new (a part retried
    /// after writing them would not know them for new: their memberships are first sights).
    held: Vec<DirectoryUser>,
    /// Users written, each once.
    written: HashSet<String>,
}

/// What a users part decided once every user of it was read.
struct Decided {
    /// Users to write now that the new ones are recorded.
    put_users: Vec<DirectoryUser>,
    unresolved: Vec<(String, String)>,
    ids: PartIds,
    new: Vec<String>,
    listed: u64,
    written: u64,
    last_id: Option<String>,
}

impl Deciding {
    /// Decides one slice's users (at places `first..`); returns the users to write now.
    fn slice(
        &mut self,
        ctx: &SyncContext<'_>,
        run: &SyncRun,
        looked: &Looked,
        users: Vec<SourceUser>,
    ) -> Vec<DirectoryUser> {
        let first = self.keys.len();
        self.keys.extend(users.iter().map(|u| (u.id.clone(), canonical_email(&u.email))));
        let mut put = Vec::new();
        for (place, user) in (first..).zip(users) {
            if !kept(ctx, &user) {
                self.excluded.push(self.keys[place].clone());
                continue;
            }
            self.kept.push(user.id.clone());
            let via = looked.via(place, &user.id);
            if via == Via::NotFound {
                self.deferred.push((place, user));
                continue;
            }
            self.decided.push((place, via));
            let manager = self.manager(looked, place, via).unzip();
            if let Some(user) = self.changed(run, looked, directory_user(user, None), manager) {
                put.push(user);
            }
        }
        put
    }

    /// The manager (id, canonical email) `via` finds for the user at `place`.
    fn manager(&self, looked: &Looked, place: usize, via: Via) -> Option<(String, String)> {
        match via {
            Via::Part(m) => Some(self.keys[m].clone()),
            Via::Stored => looked.references[place].as_deref().and_then(|r| looked.managers.get(r).cloned().flatten()),
            Via::Nobody | Via::NotFound => None,
        }
    }

    /// The user with its manager, if it must be written: new, or not as stored. A new user of a
    /// later sync is held.
    fn changed(
        &mut self,
        run: &SyncRun,
        looked: &Looked,
        mut user: DirectoryUser,
        (manager_id, manager_email): (Option<String>, Option<String>),
    ) -> Option<DirectoryUser> {
        (user.manager_id, user.manager_email) = (manager_id, manager_email);
        match looked.digests.get(&user.id) {
            Some(stored) if stored.hash == content_hash(&user) => None,
            Some(_) => {
                self.written.insert(user.id.clone());
                Some(user)
            }
            None => {
                self.new.push(user.id.clone());
                self.written.insert(user.id.clone());
                if run.first_sync {
                    Some(user)
                } else {
                    self.held.push(user);
                    None
                }
            }
        }
    }

    /// Every user of the part read: decides the deferred users and corrects those decided with
    /// a manager that a later read changed.
    async fn end(mut self, ctx: &SyncContext<'_>, run: &SyncRun, mut looked: Looked) -> Result<Decided, SyncError> {
        let integration = run.integration.as_str();
        // Every manager named elsewhere was looked up while the part read: this asks for none,
        // a guard should that ever change.
        let missing: BTreeSet<String> = self
            .deferred
            .iter()
            .filter(|(place, user)| looked.via(*place, &user.id) == Via::NotFound)
            .filter_map(|(place, _)| looked.references[*place].clone())
            .filter(|r| !looked.managers.contains_key(r))
            .collect();
        looked.managers.extend(stored_managers(ctx.store, integration, missing, &HashMap::new()).await?);

        let mut unresolved = Vec::new();
        let mut put_users = Vec::new();
        // Decided while the part read: the same manager, or corrected (rare: a manager among
        // the part's later reads that is stored too, as it was).
        let mut corrections: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        for &(place, via) in &self.decided {
            let id = &self.keys[place].0;
            let now = looked.via(place, id);
            if now == via {
                continue;
            }
            let (before, after) =
                (self.manager(&looked, place, via), self.settled(&looked, place, now, &mut unresolved));
            if before.unzip() != after {
                corrections.insert(id.clone(), after);
            }
        }
        if !corrections.is_empty() {
            for user in &mut self.held {
                if let Some(manager) = corrections.remove(&user.id) {
                    (user.manager_id, user.manager_email) = manager;
                }
            }
            let ids: Vec<String> = corrections.keys().cloned().collect();
            let stored = ctx.store.users_by_ids(integration, &ids).await?;
            if stored.len() != ids.len() {
                let missing = ids.len() - stored.len();
                return Err(SyncError::Fanout(format!("{missing} users decided by this part are not stored")));
            }
            for mut user in stored {
                let manager = corrections.remove(&user.id).unwrap_or_default();
                if (&user.manager_id, &user.manager_email) != (&manager.0, &manager.1) {
                    (user.manager_id, user.manager_email) = manager;
                    self.written.insert(user.id.clone());
                    put_users.push(user);
                }
            }
        }
        for (place, user) in std::mem::take(&mut self.deferred) {
            let now = looked.via(place, &user.id);
            let manager = self.settled(&looked, place, now, &mut unresolved);
            if let Some(user) = self.changed(run, &looked, directory_user(user, None), manager) {
                put_users.push(user);
            }
        }
        put_users.append(&mut self.held);
        unresolved.sort();
        self.kept.sort();
        self.excluded.sort();
        let (excluded, excluded_emails) = self.excluded.into_iter().unzip();
        Ok(Decided {
            put_users,
            unresolved,
            ids: PartIds { kept: self.kept, excluded, excluded_emails },
            new: self.new,
            listed: self.keys.len() as u64,
            written: self.written.len() as u64,
            last_id: self.keys.into_iter().map(|(id, _)| id).max(),
        })
    }

    /// The manager fields of the user at `place` once the whole part is read. A manager named
    /// but found neither here nor stored (a suspended one, say) keeps what the store has for it
    /// until `resolve_managers`, once every part is in, says what it is: so an unchanged user
    /// is not written twice over.
    fn settled(
        &self,
        looked: &Looked,
        place: usize,
        via: Via,
        unresolved: &mut Vec<(String, String)>,
    ) -> (Option<String>, Option<String>) {
        if via != Via::NotFound {
            return self.manager(looked, place, via).unzip();
        }
        let id = &self.keys[place].0;
        let reference = looked.references[place].clone().unwrap_or_default();
        let before = looked.digests.get(id);
        unresolved.push((id.clone(), reference.clone()));
        let Some(before) = before else { return (None, None) };
        let named = before.manager_id.as_deref() == Some(reference.as_str())
            || before.manager_email.as_deref() == Some(canonical_email(&reference).as_str());
        if named {
            (before.manager_id.clone(), before.manager_email.clone())
        } else {
            (None, None)
        }
    }
}

/// The users of a part, read a slice at a time ([`FanOut::users_per_read`], whole pages): each
/// slice's stored digests and managers looked up, its users decided and written while the next
/// slices are read.
async fn read_users(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<(Looked, Deciding), SyncError> {
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
    let deciding = async {
        let (mut looked, mut deciding) = (Looked::default(), Deciding::default());
        let mut receiver = receiver;
        while let Some(slice) = receiver.next().await {
            looked.add(ctx, &run.integration, &slice.read).await?;
            let put_users = deciding.slice(ctx, run, &looked, slice.read);
            write(ctx.store, &run.integration, DirectoryChanges { put_users, ..DirectoryChanges::default() }).await?;
            // Its place frees here: the next slice may be read.
        }
        Ok::<_, SyncError>((looked, deciding))
    };
    let ((), read) = futures::try_join!(reading, deciding)?;
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
    let (looked, deciding) = read_users(ctx, fanout, run, part, directory).await?;
    let decided = deciding.end(ctx, run, looked).await?;
    let report = PartReport {
        listed: decided.listed,
        kept: decided.ids.kept.len() as u64,
        written: decided.written,
        deleted: 0,
        last_id: decided.last_id,
        unresolved_managers: decided.unresolved,
        ..PartReport::default()
    };
    if !run.first_sync && !decided.new.is_empty() {
        fanout.runs.put_new_ids(integration, &run.run_id, NewKind::Users, part, &decided.new).await?;
    }
    let changes = DirectoryChanges { put_users: decided.put_users, ..DirectoryChanges::default() };
    write(ctx.store, integration, changes).await?;
    let ids = decided.ids;
    let done = fanout.runs.report_part(integration, &run.run_id, PartKind::Users, part, &report, &ids).await?;
    tracing::info!(
        integration,
        run_id = run.run_id,
        part,
        listed = report.listed,
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
        let managers = stored_managers(ctx.store, integration, wanted, &HashMap::new()).await?;
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
