//! The privileges a migration's lending could leave behind (see
//! migrate_lend.rs). While the tenant's role owns an object lent to it (or
//! one the scripts create and that is then given to the extension's owner),
//! code of the tenant that the scripts set off runs as that role and may
//! GRANT privileges on it to any role; ALTER ... OWNER, handing it back,
//! rewrites the grantor and the grant stays. So once the objects are handed
//! back, what they grant roles other than their owner must be what they
//! granted before, or what the template's same objects grant (a registered
//! script's own GRANT ran on the template first); anything else refuses the
//! tenant's migration.

use crate::copy::template::{self, TEMPLATE_ROLE};
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use pgrx::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// One privilege an object (or a column of it: `column` > 0) grants a role
/// other than its owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Grant {
    /// Catalog and oid.
    pub object: (String, u32),
    pub column: i16,
    /// The object's and the column's names, as the template's same object has them.
    pub name: String,
    pub column_name: String,
    /// pg_describe_object's words, for messages.
    pub described: String,
    /// A role's name, or PUBLIC.
    pub grantee: String,
    pub privilege: String,
    pub grantable: bool,
}

/// The privileges the objects ((catalog, oid), name as NOT_OWNED of
/// migrate_lend names it) grant roles other than their owners (and the
/// sequences the tables' columns own).
pub(super) fn grants<'a>(
    objects: impl IntoIterator<Item = (&'a (String, pg_sys::Oid), &'a str)>,
) -> TcResult<Vec<Grant>> {
    let mut oids: [Vec<String>; 3] = Default::default();
    let mut names: BTreeMap<(&str, u32), &str> = BTreeMap::new();
    for ((catalog, oid), name) in objects {
        names.insert((catalog.as_str(), oid.to_u32()), name);
        let slot = match catalog.as_str() {
            "pg_class" => 0,
            "pg_proc" => 1,
            _ => 2,
        };
        oids[slot].push(oid.to_u32().to_string());
    }
    if oids.iter().all(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let arrays: Vec<String> = oids.iter().map(|o| format!("{{{}}}", o.join(","))).collect();
    template::catalog_read(|| {
        db::rows_kept(
            include_str!("../../sql/queries/migration_grants.sql"),
            &[pg_sys::TEXTOID.into(); 3],
            &[arrays[0].as_str().into(), arrays[1].as_str().into(), arrays[2].as_str().into()],
            |row| {
                let text = |name: &str| Ok::<_, TcError>(db::col::<String>(row, name)?.unwrap_or_default());
                let object = (text("catalog")?, db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default().to_u32());
                let name = match names.get(&(object.0.as_str(), object.1)) {
                    Some(name) if object.0 != "pg_class" => name.to_string(),
                    _ => text("name")?,
                };
                Ok(Grant {
                    object,
                    column: db::col::<i16>(row, "attnum")?.unwrap_or_default(),
                    name,
                    column_name: text("column_name")?,
                    described: text("described")?,
                    grantee: text("grantee")?,
                    privilege: text("privilege")?,
                    grantable: db::col::<bool>(row, "grantable")?.unwrap_or_default(),
                })
            },
        )
    })
}

/// A grant as the template would have it: its object by name, the tenant's
/// role standing for the template's (the migration's rebinding makes the
/// template role's grants the tenant role's).
pub(super) type Like = (String, String, String, String, String, bool);

pub(super) fn like_template(grant: &Grant, role: &str) -> Like {
    let grantee = if grant.grantee == role { TEMPLATE_ROLE } else { grant.grantee.as_str() };
    (
        grant.object.0.clone(),
        grant.name.clone(),
        grant.column_name.clone(),
        grantee.to_string(),
        grant.privilege.clone(),
        grant.grantable,
    )
}

/// Refuse (42501) the privileges `after` grants that are neither in
/// `before` (same object by oid, same column) nor granted by the template
/// (`template`, see like_template). With `rebound`, the grants to the
/// template's role are left out: the migration's rebinding revokes them all
/// and grants the tenant's role what the template grants its own.
pub(super) fn refuse_new_grants(
    schema: &str,
    role: &str,
    (before, after): (&[Grant], &[Grant]),
    template: &BTreeSet<Like>,
    rebound: bool,
) -> TcResult<()> {
    let held = |g: &Grant| {
        let grantee = if g.grantee == role { TEMPLATE_ROLE } else { g.grantee.as_str() };
        (g.object.clone(), g.column, grantee.to_string(), g.privilege.clone(), g.grantable)
    };
    let before: BTreeSet<_> = before.iter().map(held).collect();
    let new: Vec<String> = after
        .iter()
        .filter(|g| !(rebound && g.grantee == TEMPLATE_ROLE))
        .filter(|g| !before.contains(&held(g)) && !template.contains(&like_template(g, role)))
        .map(|g| {
            let option = if g.grantable { " WITH GRANT OPTION" } else { "" };
            format!("{} to {} on {}{option}", g.privilege, g.grantee, g.described)
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    Err(TcError::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "objects of schema {schema} not owned by its role were granted privileges while it was migrated: {}",
            new.join("; ")
        ),
    )
    .hint(
        "Code of the tenant that ran during the migration granted them (the template's objects grant no such \
         privilege); nothing was kept. Run tenant.check_integrity on the tenant.",
    ))
}
