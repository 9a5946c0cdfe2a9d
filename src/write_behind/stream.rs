//! Redis stream replies, parsed: entries (XREADGROUP, XAUTOCLAIM, XRANGE),
//! entry ids, the pending summary, ids and an entry's deliveries (XPENDING)
//! and a group's state (XINFO
//! GROUPS). Pure functions over fred's `Value`; the drainer runs the commands.

use fred::prelude::Value;

/// One stream entry: its id and its flat `[field, value, ...]` list, `None`
/// when the entry was deleted while still pending.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub fields: Option<Vec<Value>>,
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A consumer group's state on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Entries delivered to a consumer and not yet acknowledged.
    pub pending: i64,
    /// Entries not yet delivered to any consumer.
    pub lag: i64,
    pub last_delivered: String,
}

/// `[[id, [field, value, ...]], ...]`; an entry whose fields are not an
/// array (nil: deleted while pending) keeps its id with `fields: None`.
pub fn entries(v: Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = match pair.pop()? {
                Value::Array(f) => Some(f),
                _ => None,
            };
            let id = pair.pop()?.as_string()?;
            Some(Entry { id, fields })
        })
        .collect()
}

/// XREADGROUP: `[[key, entries], ...]`, or nil when nothing is there.
pub fn read_group(v: Value) -> Vec<Entry> {
    let Value::Array(streams) = v else {
        return Vec::new();
    };
    streams
        .into_iter()
        .filter_map(|s| match s {
            Value::Array(mut kv) if kv.len() == 2 => Some(entries(kv.swap_remove(1))),
            _ => None,
        })
        .flatten()
        .collect()
}

/// XAUTOCLAIM: `[next-id, entries, deleted-ids]`; the claimed entries.
pub fn autoclaim(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(mut parts) if parts.len() >= 2 => entries(parts.swap_remove(1)),
        _ => Vec::new(),
    }
}

/// XPENDING (summary form): `[count, min-id, max-id, consumers]`; the
/// smallest pending id, if any entry is pending.
pub fn min_pending(v: &Value) -> Option<EntryId> {
    match v {
        Value::Array(p) if p.len() >= 2 && p[0].as_i64().unwrap_or(0) > 0 => {
            EntryId::parse(&p[1].as_str()?)
        }
        _ => None,
    }
}

/// XPENDING (extended form): `[[id, consumer, idle-ms, deliveries], ...]`;
/// the ids.
pub fn pending_ids(v: Value) -> Vec<EntryId> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Array(p) => EntryId::parse(&p.first()?.as_str()?),
            _ => None,
        })
        .collect()
}

/// XPENDING (extended form, one entry): `[[id, consumer, idle-ms,
/// deliveries]]`; the delivery count, if the entry is pending.
pub fn deliveries(v: &Value) -> Option<u64> {
    let Value::Array(rows) = v else {
        return None;
    };
    let Some(Value::Array(row)) = rows.first() else {
        return None;
    };
    row.get(3)?.as_u64()
}

/// XINFO GROUPS: one flat field list (RESP2) or map (RESP3) per group; the
/// state of `group`, if the stream has it.
pub fn group_info(v: Value, group: &str) -> Option<GroupInfo> {
    let Value::Array(groups) = v else {
        return None;
    };
    groups.into_iter().find_map(|g| {
        let pairs: Vec<Value> = match g {
            Value::Array(a) => a,
            Value::Map(m) => m
                .inner()
                .into_iter()
                .flat_map(|(k, v)| [Value::from(k), v])
                .collect(),
            _ => return None,
        };
        let mut name = None;
        let mut info = GroupInfo {
            pending: 0,
            lag: 0,
            last_delivered: String::from("0-0"),
        };
        for kv in pairs.chunks(2) {
            if let [k, v] = kv {
                match k.as_str().as_deref() {
                    Some("name") => name = v.as_string(),
                    Some("pending") => info.pending = v.as_i64().unwrap_or(0),
                    Some("lag") => info.lag = v.as_i64().unwrap_or(0),
                    Some("last-delivered-id") => {
                        info.last_delivered = v.as_string().unwrap_or(info.last_delivered)
                    }
                    _ => {}
                }
            }
        }
        (name.as_deref() == Some(group)).then_some(info)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    fn arr(v: Vec<Value>) -> Value {
        Value::Array(v)
    }

    #[test]
    fn entries_keep_fields_and_mark_deleted_ones() {
        let v = arr(vec![
            arr(vec![s("1-0"), arr(vec![s("seq"), s("3")])]),
            arr(vec![s("2-0"), Value::Null]),
            arr(vec![s("3-0")]),
        ]);
        assert_eq!(
            entries(v),
            vec![
                Entry {
                    id: "1-0".into(),
                    fields: Some(vec![s("seq"), s("3")]),
                },
                Entry {
                    id: "2-0".into(),
                    fields: None,
                },
            ]
        );
    }

    #[test]
    fn read_group_and_autoclaim_replies_yield_their_entries() {
        let one = || arr(vec![arr(vec![s("5-1"), arr(vec![s("k"), s("v")])])]);
        let read = arr(vec![arr(vec![s("{sale:x}:orders"), one()])]);
        assert_eq!(read_group(read)[0].id, "5-1");
        assert!(read_group(Value::Null).is_empty());
        let claim = arr(vec![s("0-0"), one(), arr(vec![])]);
        assert_eq!(autoclaim(claim)[0].id, "5-1");
        assert!(autoclaim(arr(vec![s("0-0")])).is_empty());
    }

    #[test]
    fn extended_xpending_replies_yield_their_ids() {
        let v = arr(vec![
            arr(vec![
                s("7-1"),
                s("c1"),
                Value::Integer(10),
                Value::Integer(1),
            ]),
            arr(vec![
                s("9-0"),
                s("c2"),
                Value::Integer(5),
                Value::Integer(2),
            ]),
        ]);
        assert_eq!(
            pending_ids(v),
            vec![EntryId { ms: 7, seq: 1 }, EntryId { ms: 9, seq: 0 }]
        );
        assert!(pending_ids(Value::Null).is_empty());
    }

    #[test]
    fn entry_ids_parse_order_and_print() {
        let a = EntryId::parse("17-3").unwrap();
        assert_eq!(a, EntryId { ms: 17, seq: 3 });
        assert!(a < EntryId::parse("17-10").unwrap());
        assert_eq!(a.to_string(), "17-3");
        assert_eq!(EntryId::parse("x"), None);
    }

    #[test]
    fn min_pending_is_none_when_nothing_is_pending() {
        let some = arr(vec![Value::Integer(2), s("4-0"), s("9-0"), arr(vec![])]);
        assert_eq!(min_pending(&some), EntryId::parse("4-0"));
        let none = arr(vec![
            Value::Integer(0),
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
        assert_eq!(min_pending(&none), None);
    }

    #[test]
    fn deliveries_come_from_the_extended_pending_reply() {
        let one = arr(vec![arr(vec![
            s("5-1"),
            s("consumer"),
            Value::Integer(120),
            Value::Integer(4),
        ])]);
        assert_eq!(deliveries(&one), Some(4));
        assert_eq!(deliveries(&arr(vec![])), None);
    }

    #[test]
    fn group_info_finds_the_named_group() {
        let group = |name: &str, pending: i64| {
            arr(vec![
                s("name"),
                s(name),
                s("pending"),
                Value::Integer(pending),
                s("last-delivered-id"),
                s("7-0"),
                s("lag"),
                Value::Integer(4),
            ])
        };
        let v = arr(vec![group("other", 9), group("write-behind", 2)]);
        assert_eq!(
            group_info(v, "write-behind"),
            Some(GroupInfo {
                pending: 2,
                lag: 4,
                last_delivered: "7-0".into(),
            })
        );
        assert_eq!(
            group_info(arr(vec![group("other", 1)]), "write-behind"),
            None
        );
    }
}
