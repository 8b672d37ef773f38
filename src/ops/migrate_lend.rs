//! What a migration's role is lent for the length of its scripts (see
//! migrate.rs): the ownership of the schema's objects it does not own, or of
//! the tables the scripts name alone (migrate_targets.rs), handed back by oid
//! afterwards with the grants that lending folded away; and the checks that
//! what was lent comes back as it went or as the template has it.

use crate::copy::structure::{self, Key};
use crate::copy::template::{self, TEMPLATE_ROLE, TEMPLATE_SCHEMA};
use crate::core::db;
use crate::core::errors::{TcError, TcResult};
use crate::ops::migrate_grants::{grants, like_template, refuse_new_grants, Grant, Like};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::collections::{BTreeMap, BTreeSet};

/// What the tenant's role is lent for the length of its scripts.
pub(super) enum Lending {
    /// Every object of the schema it does not own.
    Everything,
    /// The tables the scripts name (and, so that rows are seen as with
    /// everything lent, the tables under row-level security).
    Tables(BTreeSet<String>),
}

/// The objects of a schema, whether a role owns them, as ALTER ... OWNER
/// statement heads (fully qualified), with their catalog, oid, owner and
/// name as tenant.check_integrity names them. Indexes, a table's row type
/// and the sequences of its columns follow their table. Run with the catalog
/// search_path. A routine is named by its argument types alone
/// (oidvectortypes): the identity arguments of an ordered-set aggregate,
/// `(integer ORDER BY integer)`, are no syntax ALTER/GRANT ... ROUTINE takes.
const NOT_OWNED: &str = r#"
SELECT o.catalog, o.oid, pg_catalog.format('ALTER %s %s OWNER TO ', o.kind, o.identity) AS head,
       o.owner::pg_catalog.regrole::text AS owner, o.name, o.kind, o.identity, o.rls,
       o.owner = $2::pg_catalog.regrole AS owned
  FROM (
    SELECT 'pg_class' AS catalog, c.oid, c.relowner AS owner, c.relrowsecurity AS rls,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
           pg_catalog.format('%I.%I', $1::text, c.relname) AS identity, c.relname::text AS name
      FROM pg_catalog.pg_class c
     WHERE c.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_class') AS o(oid)) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                          AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    UNION ALL
    SELECT 'pg_proc', p.oid, p.proowner, false, 'ROUTINE',
           pg_catalog.format('%I.%I(%s)', $1::text, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),
           pg_catalog.format('%I(%s)', p.proname, tenant.deparse_in($1::text, 'identity arguments', p.oid))
      FROM pg_catalog.pg_proc p WHERE p.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_proc') AS o(oid))
    UNION ALL
    SELECT 'pg_type', t.oid, t.typowner, false, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
           pg_catalog.format('%I.%I', $1::text, t.typname), t.typname::text
      FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT o.oid FROM tenant.schema_objects($1::text, 'pg_catalog.pg_type') AS o(oid))
       AND (t.typtype IN ('e', 'd', 'r')
            OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
  ) o
 ORDER BY o.oid
"#;

/// One object of NOT_OWNED.
struct Owned {
    key: (String, pg_sys::Oid),
    head: String,
    owner: String,
    name: String,
    kind: String,
    identity: String,
    /// A table under row-level security.
    rls: bool,
}

/// The objects of a schema (not) owned by a role.
fn not_owned(schema: &str, role: &str, owned_by_role: bool) -> TcResult<Vec<Owned>> {
    let (owned, not_owned) = owned_and_not(schema, role)?;
    Ok(if owned_by_role { owned } else { not_owned })
}

/// The objects of a schema owned by a role, and the others.
fn owned_and_not(schema: &str, role: &str) -> TcResult<(Vec<Owned>, Vec<Owned>)> {
    let rows = template::catalog_read(|| {
        db::rows_kept(
            NOT_OWNED,
            &[pg_sys::TEXTOID.into(); 2],
            &[schema.into(), quote_identifier(role).as_str().into()],
            |row| {
                let owned = db::col::<bool>(row, "owned")?.unwrap_or_default();
                Ok((
                    owned,
                    Owned {
                        key: (
                            db::col::<String>(row, "catalog")?.unwrap_or_default(),
                            db::col::<pg_sys::Oid>(row, "oid")?.unwrap_or_default(),
                        ),
                        head: db::col::<String>(row, "head")?.unwrap_or_default(),
                        owner: db::col::<String>(row, "owner")?.unwrap_or_default(),
                        name: db::col::<String>(row, "name")?.unwrap_or_default(),
                        kind: db::col::<String>(row, "kind")?.unwrap_or_default(),
                        identity: db::col::<String>(row, "identity")?.unwrap_or_default(),
                        rls: db::col::<bool>(row, "rls")?.unwrap_or_default(),
                    },
                ))
            },
        )
    })?;
    let (owned, not): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(owned, _)| *owned);
    Ok((owned.into_iter().map(|(_, o)| o).collect(), not.into_iter().map(|(_, o)| o).collect()))
}

/// The default privileges the current user has in the template (ALTER
/// DEFAULT PRIVILEGES, as the extension sets them for tables and sequences),
/// granted on an object given to it after it was created.
const DEFAULT_PRIVILEGES: &str = r#"
SELECT pg_catalog.format('GRANT %s ON %s TO %s%s', x.privilege_type, $2::text,
                         CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END,
                         CASE WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
  FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) x
 WHERE d.defaclrole = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER)
   AND d.defaclnamespace IN (0, $3::pg_catalog.regnamespace) AND d.defaclobjtype = $1::"char"
   AND x.grantee <> d.defaclrole
"#;

fn apply_default_privileges(object: &Owned) -> TcResult<()> {
    let target = &object.identity;
    let (objtype, on) = match object.kind.as_str() {
        "SEQUENCE" => ("S", format!("SEQUENCE {target}")),
        "ROUTINE" => ("f", format!("ROUTINE {target}")),
        "TYPE" | "DOMAIN" => ("T", format!("TYPE {target}")),
        _ => ("r", format!("TABLE {target}")),
    };
    let grants = template::catalog_read(|| {
        db::rows(
            DEFAULT_PRIVILEGES,
            &[objtype.into(), on.as_str().into(), quote_identifier(TEMPLATE_SCHEMA).as_str().into()],
            |row| Ok(row.get::<String>(1)?.unwrap_or_default()),
        )
    })?;
    grants.iter().try_for_each(|grant| db::run(grant, &[]))
}

/// The template's structure, the same for every tenant a fleet migration
/// checks (kept until the template changes).
fn template_structure() -> TcResult<BTreeMap<Key, String>> {
    thread_local! {
        static KEPT: template::TemplateCell<BTreeMap<Key, String>> = const { std::cell::RefCell::new(None) };
    }
    template::per_template(&KEPT, || structure::read(TEMPLATE_SCHEMA, TEMPLATE_ROLE))
}

/// The names of what the template's role owns in the template (kept until
/// the template changes).
fn template_role_owns() -> TcResult<BTreeSet<String>> {
    thread_local! {
        static KEPT: template::TemplateCell<BTreeSet<String>> = const { std::cell::RefCell::new(None) };
    }
    template::per_template(&KEPT, || {
        Ok(not_owned(TEMPLATE_SCHEMA, TEMPLATE_ROLE, true)?.into_iter().map(|o| o.name).collect())
    })
}

/// One privilege an object (or a column of it: `column` > 0) grants a role.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RoleGrant {
    /// Catalog and oid.
    object: (String, u32),
    column: i16,
    privilege: String,
    grantable: bool,
}

/// The privileges of `grants` given to the role.
fn role_grants(grants: &[Grant], role: &str) -> BTreeSet<RoleGrant> {
    grants
        .iter()
        .filter(|g| g.grantee == role)
        .map(|g| RoleGrant {
            object: g.object.clone(),
            column: g.column,
            privilege: g.privilege.clone(),
            grantable: g.grantable,
        })
        .collect()
}

/// What the template's objects grant roles other than their owners (kept
/// until the template changes, as a migration's registration does).
fn template_grants() -> TcResult<BTreeSet<Like>> {
    thread_local! {
        static KEPT: template::TemplateCell<BTreeSet<Like>> = const { std::cell::RefCell::new(None) };
    }
    template::per_template(&KEPT, || {
        let (owned, not) = owned_and_not(TEMPLATE_SCHEMA, TEMPLATE_ROLE)?;
        Ok(grants(owned.iter().chain(&not).map(|o| (&o.key, o.name.as_str())))?
            .iter()
            .map(|g| like_template(g, TEMPLATE_ROLE))
            .collect())
    })
}

/// The sequence a lent table's column owns (it follows the table's owner
/// and lends its grants with it), fully qualified.
const OWNED_SEQUENCE: &str = "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) $1 AND c.relkind OPERATOR(pg_catalog.=) 'S'";

/// GRANT statements that give the role (`role_q`, quoted) the `lost`
/// privileges again on the objects (under their names in `objects`, or, for
/// the sequences their columns own, in the catalog): one statement per kind
/// of object, privileges and grant option (granting takes locks, and event
/// triggers fire once per statement), one per column grant.
fn grant_statements(lost: &[&RoleGrant], objects: &[&Owned], role_q: &str) -> TcResult<Vec<String>> {
    let mut privileges: BTreeMap<(&(String, u32), i16, bool), Vec<&str>> = BTreeMap::new();
    for grant in lost {
        privileges.entry((&grant.object, grant.column, grant.grantable)).or_default().push(&grant.privilege);
    }
    let mut tables: BTreeMap<(&str, String, bool), Vec<String>> = BTreeMap::new();
    let mut statements = Vec::new();
    for ((key, column, grantable), privileges) in privileges {
        let Some(object) = objects.iter().find(|o| o.key.0 == key.0 && o.key.1.to_u32() == key.1) else {
            if key.0 == "pg_class" && column == 0 {
                if let Some(sequence) = db::value::<String>(OWNED_SEQUENCE, &[pg_sys::Oid::from(key.1).into()])? {
                    tables.entry(("SEQUENCE", privileges.join(", "), grantable)).or_default().push(sequence);
                }
            }
            continue;
        };
        let on = match object.kind.as_str() {
            "SEQUENCE" => "SEQUENCE",
            "ROUTINE" => "ROUTINE",
            "TYPE" => "TYPE",
            "DOMAIN" => "DOMAIN",
            _ => "TABLE",
        };
        if column > 0 {
            let Some(name) = db::value::<String>(
                "SELECT attname::text FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum = $2 AND NOT attisdropped",
                &[pg_sys::Oid::from(key.1).into(), column.into()],
            )?
            else {
                continue;
            };
            let name = quote_identifier(&name);
            let list = privileges.iter().map(|p| format!("{p} ({name})")).collect::<Vec<_>>().join(", ");
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            statements.push(format!("GRANT {list} ON TABLE {} TO {role_q}{option}", object.identity));
        } else {
            tables.entry((on, privileges.join(", "), grantable)).or_default().push(object.identity.clone());
        }
    }
    for ((on, privileges, grantable), targets) in tables {
        let option = if grantable { " WITH GRANT OPTION" } else { "" };
        statements.push(format!("GRANT {privileges} ON {on} {} TO {role_q}{option}", targets.join(", ")));
    }
    Ok(statements)
}

/// What a migration's role was lent for the length of its scripts.
pub(super) struct Lent {
    schema: String,
    role: String,
    /// The objects lent, with the owners to give them back to.
    objects: Vec<Owned>,
    /// What the lent objects granted roles other than their owners before.
    /// Lending folds the grants naming the role into the owner's, and giving
    /// back does not unfold them; grants to others must come back as they
    /// went (see migrate_grants).
    granted: Vec<Grant>,
    /// What the role owned before: anything else it owns afterwards is new.
    owned_before: Vec<(String, pg_sys::Oid)>,
    /// Schema privileges the role did not hold.
    privileges: Vec<&'static str>,
    /// When only tables were lent: their oids (the structure compared).
    tables: Option<Vec<pg_sys::Oid>>,
}

impl Lent {
    pub(super) fn lend(schema: &str, role: &str, lending: &Lending) -> TcResult<Lent> {
        let (schema_q, role_q) = (quote_identifier(schema), quote_identifier(role));
        let mut privileges = Vec::new();
        for privilege in ["USAGE", "CREATE"] {
            let held: bool = db::scalar(
                "SELECT pg_catalog.has_schema_privilege($1::pg_catalog.regrole, $2::pg_catalog.regnamespace, $3)",
                &[role_q.as_str().into(), schema_q.as_str().into(), privilege.into()],
            )?;
            if !held {
                db::run(&format!("GRANT {privilege} ON SCHEMA {schema_q} TO {role_q}"), &[])?;
                privileges.push(privilege);
            }
        }
        let (owned, mut objects) = owned_and_not(schema, role)?;
        let owned_before = owned.into_iter().map(|o| o.key).collect();
        let tables = match lending {
            Lending::Everything => None,
            Lending::Tables(names) => {
                objects.retain(|o| o.key.0 == "pg_class" && (o.rls || names.contains(&o.name)));
                Some(objects.iter().map(|o| o.key.1).collect())
            }
        };
        let granted = grants(objects.iter().map(|o| (&o.key, o.name.as_str())))?;
        // One batch: one round through SPI for all of them.
        let lend = objects.iter().map(|object| format!("{}{role_q}", object.head)).collect::<Vec<_>>();
        if !lend.is_empty() {
            db::run(&lend.join(";\n"), &[])?;
        }
        Ok(Lent {
            schema: schema.to_string(),
            role: role.to_string(),
            objects,
            granted,
            owned_before,
            privileges,
            tables,
        })
    }

    /// Whether anything was lent.
    pub(super) fn lends_anything(&self) -> bool {
        !self.objects.is_empty()
    }

    /// The structure compared before and after the work: the schema's, or
    /// the lent tables' alone.
    pub(super) fn structure(&self) -> TcResult<BTreeMap<Key, String>> {
        match &self.tables {
            None => structure::read(&self.schema, &self.role),
            Some(tables) => structure::read_tables(&self.schema, &self.role, tables),
        }
    }

    /// Objects are found again by oid: a script may have renamed them.
    /// What the work created gets the owner it had before migrations ran as
    /// the tenant's role: in the template, the extension's owner (the role
    /// that runs the migration's statements as superuser did), with the
    /// default privileges it has in the template; in a tenant, the owner the
    /// template gives it (grant_like_template then copies the privileges).
    /// So a function a migration creates is never the tenant's to replace
    /// while an index of the superuser's table calls it (ANALYZE runs such
    /// expressions as the table's owner).
    ///
    /// In a tenant's schema, the lent objects and those given to the
    /// extension's owner may then grant no privilege to another role that
    /// they did not grant before and the template does not grant either
    /// (see migrate_grants): 42501 otherwise.
    pub(super) fn give_back(self) -> TcResult<()> {
        let (schema_q, role_q) = (quote_identifier(&self.schema), quote_identifier(&self.role));
        let template_role_owns: BTreeSet<String> =
            if self.schema == TEMPLATE_SCHEMA { BTreeSet::new() } else { template_role_owns()? };
        let owned_now = not_owned(&self.schema, &self.role, true)?;
        let mut back = Vec::new();
        let mut given = Vec::new();
        for now in &owned_now {
            if let Some(lent) = self.objects.iter().find(|lent| lent.key == now.key) {
                back.push(format!("{}{}", now.head, lent.owner));
            } else if !self.owned_before.contains(&now.key)
                && (self.schema == TEMPLATE_SCHEMA || !template_role_owns.contains(&now.name))
            {
                db::run(&format!("{}CURRENT_USER", now.head), &[])?;
                given.push(now);
                if self.schema == TEMPLATE_SCHEMA {
                    apply_default_privileges(now)?;
                }
            }
        }
        if !back.is_empty() {
            db::run(&back.join(";\n"), &[])?;
        }
        // The lent objects, under the names the work left them with.
        let lent_now: Vec<&Owned> =
            owned_now.iter().filter(|now| self.objects.iter().any(|lent| lent.key == now.key)).collect();
        let granted = grants(lent_now.iter().copied().chain(given).map(|o| (&o.key, o.name.as_str())))?;
        if self.schema != TEMPLATE_SCHEMA {
            // With everything lent, the migration rebinds the schema's objects
            // to the tenant afterwards (see migrate::rebind_to_tenant).
            let rebound = self.tables.is_none();
            refuse_new_grants(&self.schema, &self.role, (&self.granted, &granted), &template_grants()?, rebound)?;
        }
        let before = role_grants(&self.granted, &self.role);
        let after = role_grants(&granted, &self.role);
        let lost: Vec<&RoleGrant> = before.difference(&after).collect();
        for statement in grant_statements(&lost, &lent_now, &role_q)? {
            db::run(&statement, &[])?;
        }
        for privilege in self.privileges {
            db::run(&format!("REVOKE {privilege} ON SCHEMA {schema_q} FROM {role_q}"), &[])?;
        }
        Ok(())
    }

    /// The lent objects (and their columns, keys, indexes, triggers,
    /// policies, rules) that the work left different both from what they
    /// were and from the template.
    pub(super) fn refuse_tampering(&self, before: &BTreeMap<Key, String>) -> TcResult<()> {
        let after = self.structure()?;
        let template = template_structure()?;
        let names: BTreeSet<&str> = self.objects.iter().map(|o| o.name.as_str()).collect();
        let keys: BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
        let tampered: Vec<String> = keys
            .into_iter()
            .filter(|(_, parent, name)| names.contains(parent.as_str()) || names.contains(name.as_str()))
            .filter(|key| after.get(*key) != before.get(*key) && after.get(*key) != template.get(*key))
            .map(
                |(kind, parent, name)| {
                    if parent.is_empty() {
                        format!("{kind} {name}")
                    } else {
                        format!("{kind} {parent}.{name}")
                    }
                },
            )
            .collect();
        if tampered.is_empty() {
            return Ok(());
        }
        Err(TcError::new(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "objects of schema {} not owned by its role were changed unlike the template while it was migrated: {}",
                self.schema,
                tampered.join(", ")
            ),
        )
        .hint("Code of the tenant that ran during the migration (a trigger, an overload) changed them; nothing was kept. \
               Run tenant.check_integrity on the tenant."))
    }
}
