//! The fidelity oracle (issue 12): PostgreSQL's own `pg_dump --schema-only`
//! judges every copy. For each template of the corpus (tests/fidelity/*.sql,
//! plus a schema made by Django's own migrations), in a database of its own:
//! - copy: the dump of a new tenant equals the dump of the template once the
//!   schema and role names are swapped (the blocks of the schema itself aside:
//!   CREATE SCHEMA, its owner, grants and default privileges);
//! - backup -> drop -> restore: the dump is equal again, the rows are equal,
//!   and every sequence goes on from where it was;
//! - a migration that adds a column: the migrated tenant still equals the template;
//! - independence: `DROP SCHEMA tenant_template CASCADE` (rolled back) leaves
//!   every object of the tenant as it was.
//!
//! A corpus file is run in the template with `search_path = tenant_template`;
//! what follows a line `-- @tenant` is run in the tenant (rows for the data checks).

mod common;
use common::*;
use postgres::Client;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEMPLATE: &str = "tenant_template";
const TEMPLATE_ROLE: &str = "tenant_template_owner";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fidelity")
}

/// The template part and the tenant part of a corpus file.
fn corpus_file(name: &str) -> (String, String) {
    let path = corpus_dir().join(format!("{name}.sql"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match text.split_once("\n-- @tenant\n") {
        Some((template, tenant)) => (template.to_string(), tenant.to_string()),
        None => (text, String::new()),
    }
}

/// Replace `from` by `to` where it stands as a whole identifier (not inside
/// a longer name such as `tenant_template_settings`).
fn replace_identifier(text: &str, from: &str, to: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back().or_else(|| out.chars().next_back());
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// `pg_dump --schema-only -n schema` as blocks (split at `-- Name:` headers),
/// with the schema's role and name written ROLE and SCHEMA, the schema's own
/// blocks left out, sorted (two dumps order objects of one kind by oid).
fn dump(db: &str, schema: &str, role: &str) -> Vec<String> {
    let output = Command::new(pg_bin("pg_dump"))
        .args(["-h", &host(), "-p", &port(), "-U", "postgres", "--schema-only", "-n", schema, db])
        .output()
        .unwrap();
    assert!(output.status.success(), "pg_dump -n {schema}: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let text = replace_identifier(&replace_identifier(&text, role, "ROLE"), schema, "SCHEMA");
    let text = text.lines().map(sort_policy_roles).collect::<Vec<_>>().join("\n");
    let mut blocks: Vec<String> = text
        .split("\n-- Name: ")
        .skip(1)
        .map(|block| {
            block
                .lines()
                .filter(|l| {
                    !l.is_empty() && *l != "--" && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
                })
                .filter(|l| !l.starts_with("-- PostgreSQL database dump complete"))
                .collect::<Vec<_>>()
        })
        .map(sort_acl_lines)
        .filter(|block| {
            let header = block.lines().next().unwrap_or_default();
            !(header.starts_with("SCHEMA;")
                || header.contains("; Type: DEFAULT ACL;")
                || header.starts_with("SCHEMA SCHEMA;"))
        })
        .collect();
    blocks.sort();
    blocks
}

/// pg_dump prints an object's GRANTs in the order of the entries of its ACL,
/// an order PostgreSQL gives no meaning to (a GRANT to a role that has no
/// entry appends one). A migration that lends a template object to the
/// tenant's role and gives it back re-grants that role's privileges, so its
/// entry moves to the end in the template while an untouched tenant keeps
/// it in place: the lines of an ACL block are compared as a set, every line
/// still counted.
fn sort_acl_lines(mut lines: Vec<&str>) -> String {
    if lines.first().is_some_and(|header| header.contains("; Type: ACL;")) {
        lines[1..].sort_unstable();
    }
    lines.join("\n")
}

/// pg_dump lists a policy's roles in the order of pg_roles, where the
/// tenant's role stands after roles older than it: sort them.
fn sort_policy_roles(line: &str) -> String {
    let Some(start) = line.starts_with("CREATE POLICY ").then(|| line.find(" TO ")).flatten() else {
        return line.to_string();
    };
    let roles_start = start + " TO ".len();
    let roles_end = [" USING (", " WITH CHECK (", ";"]
        .iter()
        .filter_map(|end| line[roles_start..].find(end))
        .min()
        .map_or(line.len(), |at| roles_start + at);
    let mut roles: Vec<&str> = line[roles_start..roles_end].split(", ").collect();
    roles.sort();
    format!("{}{}{}", &line[..roles_start], roles.join(", "), &line[roles_end..])
}

fn assert_same_dump(db: &str, tenant: &str, when: &str) {
    let template = dump(db, TEMPLATE, TEMPLATE_ROLE);
    let copy = dump(db, tenant, &format!("{tenant}_owner"));
    let only_template: Vec<_> = template.iter().filter(|b| !copy.contains(b)).collect();
    let only_copy: Vec<_> = copy.iter().filter(|b| !template.contains(b)).collect();
    assert!(
        only_template.is_empty() && only_copy.is_empty(),
        "{db} {when}: the dumps differ\n--- template only:\n{}\n--- {tenant} only:\n{}",
        only_template.iter().map(|b| b.as_str()).collect::<Vec<_>>().join("\n\n"),
        only_copy.iter().map(|b| b.as_str()).collect::<Vec<_>>().join("\n\n")
    );
    assert_eq!(template.len(), copy.len(), "{db} {when}: a block appears more often in one dump");
    assert!(!template.is_empty(), "{db}: the template's dump is empty");
}

/// Row count and a hash of the ordered rows of every table of a schema.
fn rows_of(client: &mut Client, schema: &str) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', $1::text, relname) FROM pg_class
              WHERE relnamespace = $1::text::regnamespace AND relkind = 'r' ORDER BY relname",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ONLY {table} t"
                    ),
                    &[],
                )
                .unwrap();
            (replace_identifier(&table, schema, "SCHEMA"), row.get(0), row.get(1))
        })
        .collect()
}

/// (sequence, last_value, is_called) of every sequence of a schema.
fn sequences_of(client: &mut Client, schema: &str) -> Vec<(String, i64, bool)> {
    let names: Vec<String> = client
        .query(
            "SELECT format('%I.%I', $1::text, relname) FROM pg_class
              WHERE relnamespace = $1::text::regnamespace AND relkind = 'S' ORDER BY relname",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names
        .into_iter()
        .map(|seq| {
            let row = client.query_one(&format!("SELECT last_value, is_called FROM {seq}"), &[]).unwrap();
            (seq, row.get(0), row.get(1))
        })
        .collect()
}

/// Every object of a schema with its definition, read in the catalogs (in a
/// transaction, where pg_dump cannot look).
fn catalog_of(client: &mut impl postgres::GenericClient, schema: &str) -> String {
    client
        .query_one(
            "SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
                SELECT 'relation ' || relname || ' ' || relkind::text FROM pg_class WHERE relnamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                 WHERE c.relnamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                 WHERE c.relnamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c
                 WHERE c.relnamespace = $1::text::regnamespace AND c.relkind IN ('v', 'm')
                UNION ALL
                SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) FROM pg_proc p
                 WHERE p.pronamespace = $1::text::regnamespace AND p.prokind IN ('f', 'p')
                UNION ALL
                SELECT 'routine ' || p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'type ' || typname || ' ' || typtype::text FROM pg_type WHERE typnamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'trigger ' || pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
                 WHERE c.relnamespace = $1::text::regnamespace AND NOT g.tgisinternal
                UNION ALL
                SELECT 'policy ' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
                 WHERE c.relnamespace = $1::text::regnamespace
                UNION ALL
                SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                 WHERE c.relnamespace = $1::text::regnamespace
            ) objects(x)",
            &[&schema],
        )
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

fn status_ok(row: postgres::Row, what: &str) -> postgres::Row {
    let outcome = outcome(row);
    assert!(outcome.ok(), "{what}: {}", outcome.message);
    outcome.row
}

/// The name of a table a migration can add a column to.
fn some_table(client: &mut Client) -> Option<String> {
    client
        .query_opt(
            "SELECT quote_ident(c.relname) FROM pg_class c
              WHERE c.relnamespace = 'tenant_template'::regnamespace AND c.relkind IN ('r', 'p')
                AND NOT c.relispartition AND c.reloftype = 0
                AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
              ORDER BY c.relname LIMIT 1",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
}

/// The whole oracle for one template, already created in the database `db`.
fn check(db: &str, su: &mut Client, tenant: &str, tenant_rows: &str) {
    // Copy (a role of that name left by an earlier run of a kept cluster goes first).
    su.batch_execute(&format!("DROP ROLE IF EXISTS {tenant}_owner")).unwrap();
    let id = create_ok(su, tenant);
    assert_same_dump(db, tenant, "after the copy");

    // Backup -> drop -> restore.
    if !tenant_rows.trim().is_empty() {
        su.batch_execute(&format!("SET search_path = {tenant}; {tenant_rows}; RESET search_path")).unwrap();
    }
    let rows = rows_of(su, tenant);
    let sequences = sequences_of(su, tenant);
    let backup: uuid::Uuid =
        status_ok(su.query_one("SELECT * FROM tenant.backup_institution_schema($1)", &[&id]).unwrap(), "backup")
            .get("backup_id");
    status_ok(su.query_one("SELECT * FROM tenant.drop_institution_schema($1)", &[&id]).unwrap(), "drop");
    status_ok(su.query_one("SELECT * FROM tenant.restore_institution_schema($1)", &[&backup]).unwrap(), "restore");
    assert_same_dump(db, tenant, "after backup, drop and restore");
    assert_eq!(rows_of(su, tenant), rows, "{db}: the restored rows differ");
    assert_eq!(sequences_of(su, tenant), sequences, "{db}: the restored sequences differ");
    for (sequence, last, called) in &sequences {
        let next: i64 = su.query_one(&format!("SELECT nextval('{sequence}')"), &[]).unwrap().get(0);
        let increment: i64 = su
            .query_one("SELECT seqincrement FROM pg_sequence WHERE seqrelid = $1::text::regclass", &[sequence])
            .unwrap()
            .get(0);
        let expected = if *called { last + increment } else { *last };
        assert_eq!(next, expected, "{db}: {sequence} does not go on from where it was");
    }

    // A migration that adds a column.
    let script = match some_table(su) {
        Some(table) => format!("ALTER TABLE {table} ADD COLUMN fidelity_added integer DEFAULT 7"),
        None => "CREATE TABLE fidelity_added (id integer)".to_string(),
    };
    status_ok(
        su.query_one("SELECT * FROM tenant.register_migration(1, $1, 'fidelity')", &[&script]).unwrap(),
        "register_migration",
    );
    status_ok(su.query_one("SELECT * FROM tenant.migrate_institution_schema($1)", &[&id]).unwrap(), "migrate");
    assert_same_dump(db, tenant, "after a migration");

    // Independence: dropping the template touches nothing of the tenant.
    let before = catalog_of(su, tenant);
    let mut transaction = su.transaction().unwrap();
    // The template belongs to the extension: release it first (rolled back too).
    transaction
        .batch_execute(
            "ALTER EXTENSION tenant_control DROP SCHEMA tenant_template; DROP SCHEMA tenant_template CASCADE",
        )
        .unwrap();
    let after = catalog_of(&mut transaction, tenant);
    transaction.rollback().unwrap();
    assert!(!before.is_empty());
    assert_eq!(after, before, "{db}: dropping the template changed the tenant");
}

/// Create the template of corpus file `name` in a fresh database and run the oracle.
fn corpus(name: &str) {
    let db = format!("it_fid_{name}");
    let mut su = fresh_database(&db);
    let (template, tenant_rows) = corpus_file(name);
    su.batch_execute(&format!("SET search_path = tenant_template; {template}\n; RESET search_path"))
        .unwrap_or_else(|e| panic!("{name}.sql in the template: {e:?}"));
    check(&db, &mut su, &format!("fid_{name}"), &tenant_rows);
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { corpus(stringify!($name)); })*
    };
}

corpus_tests!(
    tables,
    constraints,
    indexes,
    views,
    sequences,
    functions,
    triggers,
    policies,
    types,
    comments,
    privileges,
    properties,
    sample_dvdrental,
    // Kinds and creation orders issue 12 adds to the generators.
    dependency_order,
    partitions,
    inheritance,
    typed_tables,
    aggregates,
    ranges,
    rules,
    text_search,
    statistics,
    collations,
    // Objects that need each other (a table and the function of its generated column).
    cycles,
);

/// The Python that has Django (installed by `./tc setup` into .tc/django-venv).
fn django_python() -> String {
    let python = std::env::var("TC_TEST_DJANGO_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tc/django-venv/bin/python").display().to_string()
    });
    let found = Command::new(&python).args(["-c", "import django, psycopg"]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "Django and psycopg are missing from {python}: run ./tc setup (it installs them into .tc/django-venv)"
    );
    python
}

/// A template made by Django's own migrations: contrib.auth, contenttypes,
/// admin and sessions, and a model app of ours (tests/fidelity/django/).
/// The app's migration is made by `makemigrations` in a scratch copy.
#[test]
fn django() {
    let python = django_python();
    let db = "it_fid_django";
    let mut su = fresh_database(db);
    let project = std::env::temp_dir().join("tenant_control_fidelity_django");
    let _ = std::fs::remove_dir_all(&project);
    copy_dir(&corpus_dir().join("django"), &project);
    let manage = |args: &[&str]| {
        let output = Command::new(&python)
            .arg("-m")
            .arg("django")
            .args(args)
            .current_dir(&project)
            .env("PYTHONPATH", &project)
            .env("DJANGO_SETTINGS_MODULE", "fidelity_site.settings")
            .env("TC_DJANGO_HOST", host())
            .env("TC_DJANGO_PORT", port())
            .env("TC_DJANGO_DB", db)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "django {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    manage(&["makemigrations", "library", "--no-input"]);
    manage(&["migrate", "--no-input"]);
    let tables = count(&mut su, "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_template'");
    assert!(tables >= 14, "Django's migrations made {tables} tables in the template");
    let rows = "INSERT INTO library_author (id, name, born, tags, profile) OVERRIDING SYSTEM VALUE
                    VALUES (1, 'Ann', '1970-01-02', '[\"a\"]', '{\"x\": 1}');
                INSERT INTO library_book (title, isbn, author_id, price, published_at, status)
                    VALUES ('First', '9780000000001', 1, 12.50, '2020-05-06 07:08:09+00', 'draft');
                INSERT INTO auth_group (name) VALUES ('editors');";
    check(db, &mut su, "fid_django", rows);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
