//! Members parts: a slice of the groups each; the part completing the half finishes the run.

use super::*;
use crate::ports::StoreError;
use futures::FutureExt;

/// One group's members as JumpCloud and the store have them (`None`: the group is gone).
struct GroupRead {
    group_id: String,
    fetched: Option<BTreeSet<String>>,
    stored: BTreeSet<String>,
}

pub(super) async fn members_part(
    ctx: &SyncContext<'_>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
    part: u32,
    directory: &dyn Directory,
) -> Result<PartOutcome, SyncError> {
    let integration = run.integration.as_str();
    let group_ids = fanout.runs.member_plan(integration, &run.run_id, part).await?;
    let judging = judging(ctx, fanout, run).await?;

    // Reading and storing overlap: the groups read so far are stored while later ones are read,
    // so that neither the worker's JumpCloud slots nor its store writes wait for the other.
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Ahead<GroupRead>>();
    // The stored members are read a window of groups at a time (one query, not one a group),
    // begun with the window's first JumpCloud read and shared by its groups' reads: freed once
    // they are done with it.
    let windows: Vec<Vec<String>> = group_ids.chunks(STORED_WINDOW).map(<[String]>::to_vec).collect();
    let reads = stream::iter(windows).flat_map(move |window| {
        let stored = stored_window(ctx.store, integration, &window).shared();
        stream::iter(window).map(move |group_id| {
            let stored = stored.clone();
            async move {
                let (fetched, stored) = futures::join!(directory.list_group_members(&group_id), stored);
                let fetched = match fetched {
                    Ok(members) => Some(members.into_iter().collect()),
                    Err(DirectoryError::NotFound { .. }) => None, // vanished: the finish deletes it
                    Err(e) => return Err(SyncError::Directory(e)),
                };
                let stored = stored?.get(&group_id).cloned().unwrap_or_default();
                Ok::<_, SyncError>(GroupRead { group_id, fetched, stored })
            }
        })
    });
    // The groups being read, a chunk being stored, and as many again read and waiting.
    let places = 2 * GROUP_CONCURRENCY + STORE_CHUNK;
    let reading = forward(placed(reads, places).buffer_unordered(GROUP_CONCURRENCY), sender);
    let storing = async {
        let mut report = PartReport::default();
        let mut chunks = receiver.ready_chunks(STORE_CHUNK);
        while let Some(chunk) = chunks.next().await {
            // The chunk's places free once it is stored.
            let (reads, _places): (Vec<_>, Vec<_>) = chunk.into_iter().map(Ahead::into_parts).unzip();
            store_reads(ctx, integration, judging.as_ref(), reads, directory, &mut report).await?;
        }
        Ok::<_, SyncError>(report)
    };
    let ((), report) = futures::try_join!(reading, storing)?;
    let done = fanout
        .runs
        .report_part(integration, &run.run_id, PartKind::Members, part, &report, &PartIds::default())
        .await?;
    tracing::info!(
        integration,
        run_id = run.run_id,
        part,
        written = report.written,
        deleted = report.deleted,
        done,
        of = run.member_parts,
        "members part done"
    );
    let mut moved = None;
    if done >= run.member_parts {
        let next =
            SyncRun { stage: RunStage::Finishing, moved_by: Some(part_name(PartKind::Members, part)), ..run.clone() };
        if fanout.runs.put_run(&next, Some(RunStage::Members)).await? {
            super::finish::finish(ctx, fanout, next, directory).await?;
            moved = Some(RunStage::Done);
        }
    }
    Ok(PartOutcome::Done { kind: PartKind::Members, part, moved })
}

/// Groups stored at once: each step's memberships are written before the next step's are judged.
const STORE_CHUNK: usize = 25;
/// Groups whose stored members one query reads (a span of the part's groups, in id order).
const STORED_WINDOW: usize = 25;

/// The stored members of a window of groups (consecutive in id order), by group: those of
/// other groups the span holds (stored, not planned: vanished) are read and not asked for.
fn stored_window<'a>(
    store: &'a dyn DirectoryStore,
    integration: &'a str,
    window: &[String],
) -> impl std::future::Future<Output = Result<std::sync::Arc<HashMap<String, BTreeSet<String>>>, StoreError>> + 'a {
    // The plan's groups are in id order; the least and greatest, should they ever not be.
    let span = window.iter().min().cloned().zip(window.iter().max().cloned());
    async move {
        let mut by_group: HashMap<String, BTreeSet<String>> = HashMap::new();
        if let Some((first, last)) = span {
            for (group, user) in store.memberships_of_groups(integration, &first, &last).await? {
                by_group.entry(group).or_default().insert(user);
            }
        }
        Ok(std::sync::Arc::new(by_group))
    }
}

/// Stores what some groups' reads found new or gone, adding to the part's report.
async fn store_reads(
    ctx: &SyncContext<'_>,
    integration: &str,
    judging: Option<&Judging<'_>>,
    reads: Vec<GroupRead>,
    directory: &dyn Directory,
    report: &mut PartReport,
) -> Result<(), SyncError> {
    // Memberships only of users the run stored (the single sync keeps those of the users it
    // stores: not of suspended ones, unless configured).
    let candidates: Vec<String> = reads
        .iter()
        .filter_map(|r| r.fetched.as_ref().map(|f| f.difference(&r.stored)))
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // No ids, no calls (the port's contract).
    let stored_users = ctx.store.user_emails_by_ids(integration, &candidates).await?;

    let mut changes = DirectoryChanges::default();
    for read in reads {
        let Some(fetched) = read.fetched else {
            report.gone_groups.push(read.group_id);
            continue;
        };
        let group = ObjectId::new(&read.group_id);
        let membership = |user: &str| Membership { group_id: group.clone(), user_id: ObjectId::new(user) };
        let gone: Vec<&String> = read.stored.difference(&fetched).collect();
        let added: Vec<&String> =
            fetched.difference(&read.stored).filter(|u| stored_users.contains_key(u.as_str())).collect();
        report.listed += (read.stored.len() - gone.len() + added.len()) as u64;
        changes.delete_memberships.extend(gone.iter().map(|u| membership(u)));
        for user_id in added {
            let keep = match judging {
                Some(judge) if !judge.new_users.contains(user_id) && !judge.new_groups.contains(&read.group_id) => {
                    let email = stored_users.get(user_id).map(String::as_str);
                    judge.added(ctx, integration, &read.group_id, user_id, email, directory, report).await?
                }
                _ => true,
            };
            if keep {
                changes.put_memberships.push(membership(user_id));
            } else {
                report.listed -= 1;
            }
        }
    }
    report.written += changes.put_memberships.len() as u64;
    report.deleted += changes.delete_memberships.len() as u64;
    write(ctx.store, integration, changes).await
}

/// What a members part needs to judge memberships added outside the product (`domain::outside`):
/// none on an integration's first sync, nor without the grant lifecycle or a policy.
struct Judging<'a> {
    grants: &'a crate::domain::grant::GrantContext<'a>,
    policy: std::sync::Arc<crate::ports::AppliedPolicy>,
    /// Users and groups the run stored for the first time: their memberships are first sights.
    new_users: HashSet<String>,
    new_groups: HashSet<String>,
    groups: std::sync::Mutex<HashMap<String, Option<DirectoryGroup>>>,
}

async fn judging<'a>(
    ctx: &SyncContext<'a>,
    fanout: &FanOut<'_>,
    run: &SyncRun,
) -> Result<Option<Judging<'a>>, SyncError> {
    let Some(grants) = ctx.grants else { return Ok(None) };
    if run.first_sync {
        return Ok(None);
    }
    let policy = match grants.policies.current().await {
        Ok(Some(policy)) => policy,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(SyncError::Fanout(format!(
                "reading the policy to judge memberships added outside the product: {e}"
            )))
        }
    };
    let (new_users, new_groups) = futures::try_join!(
        fanout.runs.new_ids(&run.integration, &run.run_id, NewKind::Users),
        fanout.runs.new_ids(&run.integration, &run.run_id, NewKind::Groups),
    )?;
    Ok(Some(Judging { grants, policy, new_users, new_groups, groups: Default::default() }))
}

impl Judging<'_> {
    /// Judges one membership new since the stored directory; whether to store it.
    #[allow(clippy::too_many_arguments)]
    async fn added(
        &self,
        ctx: &SyncContext<'_>,
        integration: &str,
        group_id: &str,
        user_id: &str,
        user_email: Option<&str>,
        directory: &dyn Directory,
        report: &mut PartReport,
    ) -> Result<bool, SyncError> {
        let cached = self.groups.lock().expect("lock").get(group_id).cloned();
        let group = match cached {
            Some(group) => group,
            None => {
                let group = ctx.store.group_by_id(integration, group_id).await?;
                self.groups.lock().expect("lock").insert(group_id.to_owned(), group.clone());
                group
            }
        };
        let Some(group) = group else { return Ok(true) };
        let jit_only =
            self.policy.policy.rule_for(&GroupRef { id: &group.id, name: &group.name }).is_some_and(|r| r.jit_only);
        if !jit_only {
            return Ok(true);
        }
        let key = LeaseKey {
            integration: integration.to_owned(),
            group_id: group_id.to_owned(),
            user_id: user_id.to_owned(),
        };
        let added = Added { key, group_name: &group.name, user_email };
        match outside::judge(self.grants, directory, &added).await {
            Ok(Outside::NotDrift) => Ok(true),
            Ok(Outside::Gone) => Ok(false),
            Ok(Outside::Reported) => {
                report.added_outside.push((group_id.to_owned(), user_id.to_owned(), false));
                Ok(true)
            }
            Ok(Outside::Removed) => {
                report.added_outside.push((group_id.to_owned(), user_id.to_owned(), true));
                Ok(false)
            }
            // Not stored: the next sync sees it as new again.
            Err(e) => {
                report.failures.push(format!("judging {user_id} added to {} outside the product: {e}", group.name));
                Ok(false)
            }
        }
    }
}
