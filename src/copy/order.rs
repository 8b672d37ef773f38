//! The order in which a copy's statements run, from pg_depend.
//!
//! The generators return each creating statement with its unit, the object
//! it creates (`pg_class:16384`). `sql/queries/generate_order.sql` says which
//! unit needs which, and which objects have no statement of their own (a row
//! type goes with its table, an inline CHECK with its table). The statements
//! are then sorted so that every unit comes after the units it needs, and
//! otherwise in the generators' order: a template built in any order (a
//! function replaced later to read a later view, a composite type over a
//! table's row type) is copied in an order that works. Statements without a
//! unit (comments, ownership, grants: statements on objects that exist) keep
//! their order, after all the others.

use crate::core::db;
use crate::core::errors::TcResult;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

const ORDER: &str = include_str!("../../sql/queries/generate_order.sql");

/// What generate_order.sql says about a schema: which unit needs which, and
/// which unit goes with which parent.
pub struct Dependencies {
    needs: Vec<(String, String)>,
    parent: HashMap<String, String>,
}

impl Dependencies {
    /// Read the dependencies between the objects of `schema`, keys inline in
    /// CREATE TABLE or not (with the
    /// catalog search_path and the index probes set by the caller).
    pub fn of(schema: &str, inline_keys: bool) -> TcResult<Self> {
        let rows = db::rows(ORDER, &[schema.into(), inline_keys.into()], |row| {
            Ok((
                db::col::<String>(row, "kind")?.unwrap_or_default(),
                db::col::<String>(row, "unit")?.unwrap_or_default(),
                db::col::<String>(row, "other")?.unwrap_or_default(),
            ))
        })?;
        let mut dependencies = Dependencies { needs: Vec::new(), parent: HashMap::new() };
        for (kind, unit, other) in rows {
            if kind == "part" {
                dependencies.parent.insert(unit, other);
            } else {
                dependencies.needs.push((unit, other));
            }
        }
        Ok(dependencies)
    }
}

/// Sort `items` (each with its unit, if any) so that each unit comes after
/// those it needs; ties, and everything a cycle leaves, keep their order.
pub fn sort<T>(items: Vec<(T, Option<String>)>, dependencies: &Dependencies) -> Vec<T> {
    // Units in order of their first statement; a unit may have several statements.
    let mut first: HashMap<String, usize> = HashMap::new();
    for (n, (_, unit)) in items.iter().enumerate() {
        if let Some(unit) = unit {
            first.entry(unit.clone()).or_insert(n);
        }
    }
    // An object without a statement of its own stands for its parent's.
    let resolve = |unit: &str| -> Option<usize> {
        let mut unit = unit;
        for _ in 0..8 {
            if let Some(&n) = first.get(unit) {
                return Some(n);
            }
            unit = dependencies.parent.get(unit)?;
        }
        None
    };
    let mut after: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    let mut waiting: HashMap<usize, usize> = HashMap::new();
    for (unit, other) in &dependencies.needs {
        if let (Some(a), Some(b)) = (resolve(unit), resolve(other)) {
            if a != b && after.entry(b).or_default().insert(a) {
                *waiting.entry(a).or_default() += 1;
            }
        }
    }
    // Kahn's algorithm, always taking the earliest unit that is ready.
    let mut ready: BinaryHeap<Reverse<usize>> =
        first.values().filter(|n| !waiting.contains_key(n)).map(|&n| Reverse(n)).collect();
    let mut order = Vec::with_capacity(first.len());
    while let Some(Reverse(n)) = ready.pop() {
        order.push(n);
        for &next in after.get(&n).into_iter().flatten() {
            let count = waiting.get_mut(&next).expect("counted above");
            *count -= 1;
            if *count == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    // A cycle (which PostgreSQL itself cannot create in one go) keeps the
    // generators' order: the batch then names the statement that fails.
    let placed: BTreeSet<usize> = order.iter().copied().collect();
    let mut rest: Vec<usize> = first.values().copied().filter(|n| !placed.contains(n)).collect();
    rest.sort_unstable();
    order.extend(rest);

    let rank: HashMap<usize, usize> = order.iter().enumerate().map(|(rank, &n)| (n, rank)).collect();
    let mut keyed: Vec<(usize, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(n, (item, unit))| {
            let rank = unit.map_or(usize::MAX, |unit| rank[&first[&unit]]);
            (rank, n, item)
        })
        .collect();
    keyed.sort_by_key(|(rank, n, _)| (*rank, *n));
    keyed.into_iter().map(|(_, _, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dependencies(needs: &[(&str, &str)], parent: &[(&str, &str)]) -> Dependencies {
        Dependencies {
            needs: needs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            parent: parent.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    fn item(name: &'static str, unit: Option<&str>) -> (&'static str, Option<String>) {
        (name, unit.map(str::to_string))
    }

    #[test]
    fn a_unit_comes_after_what_it_needs_and_ties_keep_their_order() {
        let items = vec![
            item("function reading the view", Some("f")),
            item("comment", None),
            item("table", Some("t")),
            item("view", Some("v")),
            item("enable trigger", Some("g")),
            item("create trigger", Some("g")),
        ];
        // The view's rule stands for the view; the row type for its table.
        let deps = dependencies(&[("f", "rule"), ("rule", "t"), ("g", "rowtype")], &[("rule", "v"), ("rowtype", "t")]);
        assert_eq!(
            sort(items, &deps),
            vec!["table", "view", "function reading the view", "enable trigger", "create trigger", "comment"]
        );
    }

    #[test]
    fn a_cycle_keeps_the_generators_order_and_loses_nothing() {
        let items = vec![item("a", Some("a")), item("b", Some("b")), item("c", Some("c"))];
        let deps = dependencies(&[("a", "b"), ("b", "a"), ("b", "outside")], &[]);
        assert_eq!(sort(items, &deps), vec!["c", "a", "b"]);
    }
}
