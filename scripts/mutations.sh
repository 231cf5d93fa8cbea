#!/usr/bin/env bash
# The mutation check: each build tag below plants one deliberate bug; the
# simulator must catch every one of them (fail) within a few seeds. Run it
# after changing the simulator's invariants, to show they still bite:
#
#   ./scripts/mutations.sh            # every mutation, 20 seeds each
#   ./scripts/mutations.sh TAG...     # only these
set -uo pipefail
cd "$(dirname "$0")/.."

# tag: what it breaks (the file that plants it)
mutations=(
  "mutation_drop_conflicts: a pull's replay drops the conflicts it finds instead of recording them (dbactor/mutation_drop_conflicts.go)"
  "mutation_replay_pushed: a pull's replay floor is what the replica knows it pushed, not the server's mark: a push whose answer was lost is replayed and pushed again (dbactor/mutation_replay_pushed.go)"
  "mutation_split_txns: a push batch may end inside a local transaction (dbactor/mutation_split_txns.go)"
  "mutation_meta_cache_first: the -info cache advances before its write succeeded (metaactor/mutation_meta_cache_first.go)"
  "mutation_compact_shadowed: history compaction drops page versions that retained revisions still need (server/history/mutation_compact_shadowed.go)"
  "mutation_bootstrap_uncovered: a checkpoint backfills the WAL under a live bootstrap whose read transaction sees a commit its revision lacks (server/mutation_bootstrap_uncovered.go)"
  "mutation_long_poll_late: a long poll misses a commit that lands between its check and its wait (server/mutation_long_poll_late.go)"
  "mutation_blind_deletes: a delete of a row another client changed is no conflict, at push or replay: the other change vanishes (dbactor/ and syncactor/mutation_blind_deletes.go)"
  "mutation_false_conflicts: a replayed update of a row that is there is recorded as update-deleted (dbactor/mutation_false_conflicts.go)"
  "mutation_blind_added_columns: a delete made before its replica pulled a column another client added and filled is no conflict, at push or replay: the column's value vanishes (internal/change/ and dbactor/mutation_blind_added_columns.go)"
  "mutation_fetch_over_present: a partial replica's fetch writes its pages (the pinned revision's) over pages that became present while it was in flight (pageactor/mutation_fetch_over_present.go)"
  "mutation_stale_wal_generation: a pull that starts on a WAL a checkpoint emptied is not anchored in a new WAL generation: a power loss before T1 brings back the checkpointed WAL, and recovery takes its frames for T1 (dbactor/mutation_stale_wal_generation.go)"
  "mutation_copied_unanchored: a pull that starts on a WAL an automatic checkpoint copied whole (RESTART, not yet restarted) is not anchored: T1 restarts the WAL, and recovery, looking for T1 in the older generation, abandons a committed pull (dbactor/mutation_copied_unanchored.go)"
  "mutation_syncnormal_unsynced_anchor: a SyncNormal pull anchors on a WAL whose last local commits are not on disk: a power loss before T1 takes the anchor back, and recovery detaches the replica (dbactor/mutation_syncnormal_unsynced_anchor.go)"
  "mutation_syncnormal_unsynced_push: a SyncNormal push sends local commits that are not on disk: a power loss takes back changes the server has (dbactor/mutation_syncnormal_unsynced_push.go)"
  "mutation_syncnormal_unsynced_localwal: a SyncNormal replica records its WAL generation's first local commit in -info before that commit is on disk: a power loss keeps the record and takes the commit back, and the open refuses a healthy replica (dbactor/mutation_syncnormal_unsynced_localwal.go)"
)

want=("$@")
status=0
for m in "${mutations[@]}"; do
  tag=${m%%:*}
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " $tag " ]]; then
    continue
  fi
  echo "== $m"
  start=$(date +%s)
  out=$(go test -count=1 -failfast -v -tags "$tag" ./sim -run 'TestSim$' -seeds=20 -ops=300 2>&1)
  if echo "$out" | grep -q 'invariant violations'; then
    echo "   caught after $(($(date +%s) - start)) s (build included), $(echo "$out" | grep -m1 -- '--- FAIL: TestSim/' | sed 's/^ *--- FAIL: TestSim\//first failing seed /')"
    echo "   $(echo "$out" | grep -m1 'invariant violations' | sed 's/^ *//' | cut -c1-300)"
  else
    echo "   NOT CAUGHT: the simulator passed with the bug planted"
    status=1
  fi
done
exit $status
