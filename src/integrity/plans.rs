//! The per-tenant catalog queries of the integrity check, planned once per
//! check rather than once per tenant: they do not depend on search_path (the
//! check's is pinned), so one generic plan serves every tenant.

use crate::core::db;
use crate::core::errors::TcResult;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiHeapTupleData};
use std::collections::HashMap;

/// A query of the check that keeps its plan while a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    CrossTenant,
    ForeignKeys,
    Privileges,
    RunAsOwner,
    Presence,
    PlainRelations,
}

impl Query {
    const ALL: [Query; 6] = [
        Query::CrossTenant,
        Query::ForeignKeys,
        Query::Privileges,
        Query::RunAsOwner,
        Query::Presence,
        Query::PlainRelations,
    ];

    fn sql(self) -> &'static str {
        match self {
            Query::CrossTenant => include_str!("../../sql/queries/integrity_cross_tenant.sql"),
            Query::ForeignKeys => include_str!("../../sql/queries/integrity_foreign_keys.sql"),
            Query::Privileges => include_str!("../../sql/queries/integrity_privileges.sql"),
            Query::RunAsOwner => include_str!("../../sql/queries/integrity_run_as_owner.sql"),
            // Whether schema $1 and role $2 exist.
            Query::Presence => {
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1) AS schema_exists,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $2) AS role_exists"
            }
            // Which of the qualified names $1 are ordinary or partitioned tables.
            Query::PlainRelations => {
                "SELECT x.name FROM pg_catalog.unnest($1::text[]) AS x(name)
                  WHERE (SELECT c.relkind FROM pg_catalog.pg_class c
                          WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x.name)) OPERATOR(pg_catalog.=) ANY ('{r,p}'::\"char\"[])"
            }
        }
    }

    fn argument_types(self) -> &'static [PgBuiltInOids] {
        const TEXT: PgBuiltInOids = PgBuiltInOids::TEXTOID;
        match self {
            Query::ForeignKeys => &[TEXT, TEXT, PgBuiltInOids::BOOLOID],
            Query::RunAsOwner | Query::Presence => &[TEXT, TEXT],
            Query::PlainRelations => &[PgBuiltInOids::TEXTARRAYOID],
            Query::CrossTenant | Query::Privileges => &[TEXT],
        }
    }
}

thread_local! {
    /// The kept plans while a check runs (see Plans).
    static PLANS: std::cell::RefCell<HashMap<Query, OwnedPreparedStatement>> = std::cell::RefCell::new(HashMap::new());
}

/// Holds the kept plans for one check and frees them when the check ends,
/// however it ends.
pub struct Plans;

impl Plans {
    pub fn prepare() -> TcResult<Plans> {
        for query in Query::ALL {
            let types: Vec<PgOid> = query.argument_types().iter().map(|t| PgOid::BuiltIn(*t)).collect();
            let plan = Spi::connect(|client| client.prepare(query.sql(), &types).map(|plan| plan.keep()))?;
            PLANS.with(|plans| plans.borrow_mut().insert(query, plan));
        }
        Ok(Plans)
    }
}

impl Drop for Plans {
    fn drop(&mut self) {
        PLANS.with(|plans| plans.borrow_mut().clear());
    }
}

/// `db::rows` for a query of the check, with its kept plan when a check holds one.
pub fn rows<T>(
    query: Query,
    args: &[DatumWithOid],
    mut map: impl FnMut(&SpiHeapTupleData) -> TcResult<T>,
) -> TcResult<Vec<T>> {
    let ran = PLANS.with(|plans| {
        let plans = plans.borrow();
        plans.get(&query).map(|plan| {
            Spi::connect_mut(|client| {
                let table = client.update(plan, None, args)?;
                table.map(|row| map(&row)).collect::<TcResult<Vec<T>>>()
            })
        })
    });
    match ran {
        Some(rows) => rows,
        None => db::rows(query.sql(), args, map),
    }
}
