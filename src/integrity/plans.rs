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
    Counters,
}

impl Query {
    const ALL: [Query; 4] = [Query::CrossTenant, Query::ForeignKeys, Query::Privileges, Query::Counters];

    fn sql(self) -> &'static str {
        match self {
            Query::CrossTenant => include_str!("../../sql/queries/integrity_cross_tenant.sql"),
            Query::ForeignKeys => include_str!("../../sql/queries/integrity_foreign_keys.sql"),
            Query::Privileges => include_str!("../../sql/queries/integrity_privileges.sql"),
            Query::Counters => include_str!("../../sql/queries/integrity_counters.sql"),
        }
    }

    fn argument_types(self) -> &'static [PgBuiltInOids] {
        const TEXT: PgBuiltInOids = PgBuiltInOids::TEXTOID;
        match self {
            Query::ForeignKeys => &[TEXT, TEXT, PgBuiltInOids::BOOLOID],
            Query::CrossTenant | Query::Privileges | Query::Counters => &[TEXT],
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
