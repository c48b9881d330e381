//! How job events are laid out in Redis Streams: key names, entry fields and the one append
//! script. The backend's `RedisEventBus` and the worker's Redis sink both use this module, so
//! they write identical entries with the same script. Strings and arithmetic only (no I/O).
//!
//! Keys, per job (`P` is the prefix, `ORCA_REDIS_PREFIX`, default `orca`; the `{…}` hash tag
//! keeps a job's three keys in one Redis Cluster slot, so the script may touch all of them):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:job:{<job id>}:events` | stream | one entry per event, entry id `<n>-0` for event id `n`; fields `e` (the event JSON) and `t` (timestamp, µs since the Unix epoch) |
//! | `P:job:{<job id>}:seq` | string | the last event id handed out (`INCR`) |
//! | `P:job:{<job id>}:writers` | hash | writer id → `"<seq>:<event id>"` of that writer's last append, so a retried append is not written twice |
//!
//! Retention: every `XADD` trims the stream to about `MAXLEN` entries (`~`); after a job's
//! terminal event all three keys expire after the TTL (`ORCA_EVENTS_TTL_SECONDS`).

use crate::event::EventId;

/// The key prefix used when `ORCA_REDIS_PREFIX` is unset.
pub const DEFAULT_PREFIX: &str = "orca";
/// Stream field holding the event's JSON (an [`crate::AgentEvent`]).
pub const FIELD_EVENT: &str = "e";
/// Stream field holding the event's timestamp in microseconds since the Unix epoch.
pub const FIELD_TIME: &str = "t";

/// Appends one event and returns its id (an integer).
///
/// KEYS: events stream, seq counter, writers hash.
/// ARGV: 1 event JSON, 2 timestamp µs, 3 MAXLEN (0: unbounded), 4 writer id ('' for none),
/// 5 the writer's sequence number for this append, 6 TTL seconds to set on all three keys
/// (0: none; the backend passes it with the terminal event), 7 (optional) `'first'`: append
/// only if the job has no event yet, else return -1 and write nothing.
///
/// A writer appends one event at a time, so an append whose (writer, seq) is already recorded
/// is a retry of an append that did happen (say the reply was lost when Redis restarted): the
/// script returns the recorded id and writes nothing.
pub const APPEND_SCRIPT: &str = r#"
if ARGV[4] ~= '' then
  local prev = redis.call('HGET', KEYS[3], ARGV[4])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    if tonumber(string.sub(prev, 1, sep - 1)) >= tonumber(ARGV[5]) then
      return tonumber(string.sub(prev, sep + 1))
    end
  end
end
if ARGV[7] == 'first' and redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local n = redis.call('INCR', KEYS[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], n .. '-0', 'e', ARGV[1], 't', ARGV[2])
else
  redis.call('XADD', KEYS[1], n .. '-0', 'e', ARGV[1], 't', ARGV[2])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5] .. ':' .. n)
end
if tonumber(ARGV[6]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return n
"#;

/// The three keys of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeys {
    pub events: String,
    pub seq: String,
    pub writers: String,
}

impl JobKeys {
    /// `job` is the job id as text (the UUID, hyphenated, lower case).
    pub fn new(prefix: &str, job: &str) -> Self {
        Self {
            events: format!("{prefix}:job:{{{job}}}:events"),
            seq: format!("{prefix}:job:{{{job}}}:seq"),
            writers: format!("{prefix}:job:{{{job}}}:writers"),
        }
    }
}

/// The stream entry id of event `id`.
pub fn entry_id(id: EventId) -> String {
    format!("{id}-0")
}

/// The event id of a stream entry id written by [`APPEND_SCRIPT`].
pub fn parse_entry_id(entry: &str) -> Option<EventId> {
    entry.strip_suffix("-0")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let k = JobKeys::new("orca", "0193a0a0-0000-7000-8000-000000000000");
        assert_eq!(k.events, "orca:job:{0193a0a0-0000-7000-8000-000000000000}:events");
        assert!(k.seq.ends_with("}:seq") && k.writers.ends_with("}:writers"));
    }

    #[test]
    fn entry_ids_round_trip() {
        assert_eq!(entry_id(42), "42-0");
        assert_eq!(parse_entry_id("42-0"), Some(42));
        assert_eq!(parse_entry_id("42-1"), None);
        assert_eq!(parse_entry_id("x-0"), None);
    }
}
