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
//!
//! Objects that need each other (a table whose generated column calls a
//! function whose SQL-standard body reads that table) are built the way a
//! user builds them: the function first with a placeholder body, then the
//! table, then the function's real body (CREATE OR REPLACE). Only functions
//! on such a cycle are split, so other templates keep one statement per object.

use crate::core::db;
use crate::core::errors::TcResult;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

const ORDER: &str = include_str!("../../sql/queries/generate_order.sql");

/// What generate_order.sql says about a schema: which unit needs which,
/// which unit goes with which parent, and which functions can be created
/// with a placeholder body first (with the units their signature needs).
pub struct Dependencies {
    needs: Vec<(String, String)>,
    parent: HashMap<String, String>,
    stubs: HashMap<String, Vec<String>>,
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
        let mut dependencies = Dependencies { needs: Vec::new(), parent: HashMap::new(), stubs: HashMap::new() };
        for (kind, unit, other) in rows {
            match kind.as_str() {
                "part" => {
                    dependencies.parent.insert(unit, other);
                }
                "stub" => {
                    let signature = dependencies.stubs.entry(unit).or_default();
                    if !other.is_empty() {
                        signature.push(other);
                    }
                }
                _ => dependencies.needs.push((unit, other)),
            }
        }
        Ok(dependencies)
    }
}

/// Sort `items` (each with its unit, if any) so that each unit comes after
/// those it needs; ties keep their order. Placeholders of functions (units
/// `stub:<function's unit>`) are kept only for functions on a cycle, whose
/// statement `or_replace` then turns into CREATE OR REPLACE (see the
/// module's comment); whatever cycle is left keeps the generators' order,
/// and the batch then names the statement that fails.
pub fn sort<T>(items: Vec<(T, Option<String>)>, dependencies: &Dependencies, or_replace: impl Fn(T) -> T) -> Vec<T> {
    let placeholder_of =
        |unit: &Option<String>| unit.as_deref().and_then(|u| u.strip_prefix("stub:")).map(str::to_owned);
    let graph =
        Graph::new(items.iter().map(|(_, unit)| unit).filter(|unit| placeholder_of(unit).is_none()), dependencies);
    let (order, cyclic) = graph.order();
    let broken: HashSet<String> = cyclic
        .iter()
        .map(|&n| graph.units[n].as_str())
        .filter(|unit| graph.on_cycle(unit))
        // A placeholder helps only when its signature is not on the cycle too.
        .filter(|unit| {
            dependencies.stubs.get(*unit).is_some_and(|signature| {
                signature.iter().filter_map(|s| graph.resolve(s, dependencies)).all(|s| !graph.reaches(&s, unit))
            })
        })
        .map(str::to_owned)
        .collect();
    let items: Vec<(T, Option<String>)> = items
        .into_iter()
        .filter_map(|(item, unit)| match (placeholder_of(&unit), unit) {
            (Some(function), unit) => broken.contains(&function).then_some((item, unit)),
            (None, Some(unit)) if broken.contains(&unit) => Some((or_replace(item), Some(unit))),
            (None, unit) => Some((item, unit)),
        })
        .collect();
    if broken.is_empty() {
        return arrange(items, &graph, &order);
    }
    // What a broken function's body needs and that needs it back (the
    // cycle) waits for its placeholder only; its real body waits for the
    // placeholder, and the placeholder for the types of its signature.
    let mut needs = Vec::with_capacity(graph.needs.len() + 2 * broken.len());
    for (unit, other) in &graph.needs {
        if broken.contains(other) && graph.reaches(other, unit) {
            needs.push((unit.clone(), format!("stub:{other}")));
        } else {
            needs.push((unit.clone(), other.clone()));
        }
    }
    for function in &broken {
        needs.push((function.clone(), format!("stub:{function}")));
        needs.extend(dependencies.stubs[function].iter().map(|s| (format!("stub:{function}"), s.clone())));
    }
    let dependencies = Dependencies { needs, parent: dependencies.parent.clone(), stubs: HashMap::new() };
    let graph = Graph::new(items.iter().map(|(_, unit)| unit), &dependencies);
    let (order, _) = graph.order();
    arrange(items, &graph, &order)
}

/// The units of a script (in order of their first statement) and what each
/// needs, with objects that have no statement of their own resolved to
/// their parent's.
struct Graph {
    units: Vec<String>,
    /// The units that have a statement.
    first: HashSet<String>,
    /// (unit, other): unit needs other, both resolved, each edge once.
    needs: Vec<(String, String)>,
}

impl Graph {
    fn new<'a>(units_of_items: impl Iterator<Item = &'a Option<String>>, dependencies: &Dependencies) -> Self {
        let mut first: HashSet<String> = HashSet::new();
        let mut units = Vec::new();
        for unit in units_of_items.flatten() {
            if first.insert(unit.clone()) {
                units.push(unit.clone());
            }
        }
        let mut graph = Graph { units, first, needs: Vec::new() };
        let mut seen = HashSet::new();
        for (unit, other) in &dependencies.needs {
            if let (Some(a), Some(b)) = (graph.resolve(unit, dependencies), graph.resolve(other, dependencies)) {
                if a != b && seen.insert((a.clone(), b.clone())) {
                    graph.needs.push((a, b));
                }
            }
        }
        graph
    }

    /// The unit whose statement creates `unit`: an object without a
    /// statement of its own stands for its parent's.
    fn resolve(&self, unit: &str, dependencies: &Dependencies) -> Option<String> {
        let mut unit = unit;
        for _ in 0..8 {
            if self.first.contains(unit) {
                return Some(unit.to_string());
            }
            unit = dependencies.parent.get(unit)?;
        }
        None
    }

    /// Kahn's algorithm, always taking the earliest unit that is ready: the
    /// units (as indexes into `units`) in order, and those left on or after
    /// a cycle.
    fn order(&self) -> (Vec<usize>, Vec<usize>) {
        let index: HashMap<&str, usize> = self.units.iter().enumerate().map(|(n, u)| (u.as_str(), n)).collect();
        let mut after: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut waiting: HashMap<usize, usize> = HashMap::new();
        for (unit, other) in &self.needs {
            let (a, b) = (index[unit.as_str()], index[other.as_str()]);
            after.entry(b).or_default().push(a);
            *waiting.entry(a).or_default() += 1;
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..self.units.len()).filter(|n| !waiting.contains_key(n)).map(Reverse).collect();
        let mut order = Vec::with_capacity(self.units.len());
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
        let placed: BTreeSet<usize> = order.iter().copied().collect();
        let rest: Vec<usize> = (0..self.units.len()).filter(|n| !placed.contains(n)).collect();
        (order, rest)
    }

    /// Whether `unit` needs, through other units, a unit that needs it.
    fn on_cycle(&self, unit: &str) -> bool {
        self.needs.iter().any(|(a, b)| b == unit && self.reaches(unit, a))
    }

    /// Whether `from` needs `to`, directly or through other units.
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = HashSet::from([from]);
        let mut todo = vec![from];
        while let Some(unit) = todo.pop() {
            for (a, b) in &self.needs {
                if a == unit && seen.insert(b.as_str()) {
                    if b == to {
                        return true;
                    }
                    todo.push(b.as_str());
                }
            }
        }
        false
    }
}

/// The statements in the units' `order` (units left on a cycle after, in
/// the generators' order), statements without a unit last, in their order.
fn arrange<T>(items: Vec<(T, Option<String>)>, graph: &Graph, order: &[usize]) -> Vec<T> {
    let placed: HashSet<usize> = order.iter().copied().collect();
    let rest = (0..graph.units.len()).filter(|n| !placed.contains(n));
    let rank: HashMap<&str, usize> =
        order.iter().copied().chain(rest).enumerate().map(|(rank, n)| (graph.units[n].as_str(), rank)).collect();
    let mut keyed: Vec<(usize, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(n, (item, unit))| (unit.map_or(usize::MAX, |unit| rank[unit.as_str()]), n, item))
        .collect();
    keyed.sort_by_key(|(rank, n, _)| (*rank, *n));
    keyed.into_iter().map(|(_, _, item)| item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn dependencies(needs: &[(&str, &str)], parent: &[(&str, &str)]) -> Dependencies {
        Dependencies { needs: pairs(needs), parent: pairs(parent).into_iter().collect(), stubs: HashMap::new() }
    }

    /// A function's statement made CREATE OR REPLACE.
    fn or_replace(item: &'static str) -> &'static str {
        match item {
            "f" => "f body",
            "g" => "g body",
            other => panic!("{other} is no function on a cycle"),
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
            sort(items, &deps, or_replace),
            vec!["table", "view", "function reading the view", "enable trigger", "create trigger", "comment"]
        );
    }

    #[test]
    fn a_cycle_keeps_the_generators_order_and_loses_nothing() {
        let items = vec![item("a", Some("a")), item("b", Some("b")), item("c", Some("c"))];
        let deps = dependencies(&[("a", "b"), ("b", "a"), ("b", "outside")], &[]);
        assert_eq!(sort(items, &deps, or_replace), vec!["c", "a", "b"]);
    }

    #[test]
    fn a_function_on_a_cycle_gets_a_placeholder_that_waits_for_its_signature_only() {
        // Table t's generated column (its attrdef) calls f; f's body reads t;
        // f takes type d. View v calls f; function g is on no cycle.
        let items = vec![
            item("f placeholder", Some("stub:f")),
            item("f", Some("f")),
            item("g placeholder", Some("stub:g")),
            item("g", Some("g")),
            item("d", Some("d")),
            item("t", Some("t")),
            item("v", Some("v")),
            item("comment", None),
        ];
        let mut deps =
            dependencies(&[("attrdef", "f"), ("f", "t"), ("f", "d"), ("v", "f"), ("g", "t")], &[("attrdef", "t")]);
        deps.stubs = [("f".to_string(), vec!["d".to_string()]), ("g".to_string(), vec![])].into_iter().collect();
        assert_eq!(sort(items, &deps, or_replace), vec!["d", "f placeholder", "t", "f body", "g", "v", "comment"]);
    }

    #[test]
    fn a_cycle_no_placeholder_can_break_keeps_the_generators_order() {
        // f's signature names t's row type, and t's generated column calls f.
        let items = vec![item("f placeholder", Some("stub:f")), item("f", Some("f")), item("t", Some("t"))];
        let mut deps = dependencies(&[("t", "f"), ("f", "rowtype")], &[("rowtype", "t")]);
        deps.stubs = [("f".to_string(), vec!["rowtype".to_string()])].into_iter().collect();
        assert_eq!(sort(items, &deps, or_replace), vec!["f", "t"]);
    }
}
