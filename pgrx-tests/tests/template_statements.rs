//! The statements generated for the template, shared by every connection
//! (tenant.template_statements): a new connection reuses them, a change of
//! the template or a rename of something outside it that the template names
//! makes the next copy generate them again, and no one but the extension's
//! owner can read or write them.

mod common;
use common::*;
use postgres::Client;

const DB: &str = "it_template_statements";

/// Create a tenant; whether its copy generated the statements (rather than
/// reusing stored ones), from the operation log.
fn create_generated(client: &mut Client, schema: &str) -> bool {
    create_ok(client, schema);
    client
        .query_one(
            "SELECT (metadata->'template'->>'generated')::boolean FROM tenant.schema_operations
              WHERE operation_type = 'CREATE' AND metadata->>'schema_name' = $1 ORDER BY id DESC LIMIT 1",
            &[&schema],
        )
        .unwrap()
        .get(0)
}

/// A view's definition, with every table outside pg_catalog qualified.
fn view_definition(client: &mut Client, view: &str) -> String {
    client.batch_execute("SET search_path = pg_catalog").unwrap();
    client.query_one("SELECT pg_get_viewdef($1::text::regclass)", &[&view]).unwrap().get(0)
}

#[test]
fn a_new_connection_reuses_the_statements_another_generated() {
    let mut first = fresh_database(DB);
    first
        .batch_execute("CREATE TABLE tenant_template.notes (id int PRIMARY KEY, body text NOT NULL DEFAULT '')")
        .unwrap();
    assert!(create_generated(&mut first, "ts_a"), "the first copy after a change generates");
    assert!(!create_generated(&mut first, "ts_b"), "the same connection reuses");
    let mut second = superuser(DB);
    assert!(!create_generated(&mut second, "ts_c"), "a new connection reuses the stored statements");
    assert_eq!(count(&mut second, "SELECT count(*) FROM tenant.template_statements"), 1);

    // A change of the template, in either connection, is seen by both.
    second.batch_execute("ALTER TABLE tenant_template.notes ADD COLUMN title text").unwrap();
    assert!(create_generated(&mut first, "ts_d"));
    assert!(!create_generated(&mut second, "ts_e"), "stored by the other connection");
    assert_eq!(
        count(
            &mut second,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ts_e' AND column_name = 'title'"
        ),
        1
    );
    assert_eq!(
        count(&mut second, "SELECT count(*) FROM tenant.template_statements"),
        1,
        "older statements are removed"
    );

    // A change rolled back leaves the stored statements good.
    first.batch_execute("BEGIN; ALTER TABLE tenant_template.notes ADD COLUMN gone int; ROLLBACK").unwrap();
    let mut third = superuser(DB);
    assert!(!create_generated(&mut third, "ts_f"), "the change was rolled back with its record");
    assert_eq!(
        count(
            &mut third,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ts_f' AND column_name = 'gone'"
        ),
        0
    );
}

#[test]
fn renaming_what_the_template_names_outside_it_makes_copies_generate_again() {
    let db = "it_template_statements_names";
    let mut first = fresh_database(db);
    first
        .batch_execute(
            "DROP ROLE IF EXISTS ts_auditors; DROP ROLE IF EXISTS ts_auditors_old;
             CREATE ROLE ts_auditors NOLOGIN;
             CREATE TABLE public.ts_lookup (code text PRIMARY KEY);
             CREATE VIEW tenant_template.codes AS SELECT code FROM public.ts_lookup;
             GRANT SELECT ON tenant_template.codes TO ts_auditors;",
        )
        .unwrap();
    assert!(create_generated(&mut first, "tn_a"));
    assert!(view_definition(&mut first, "tn_a.codes").contains("public.ts_lookup"));

    // The table the template's view reads is renamed and a new one takes its
    // name: the template still reads the old one, so must every copy.
    first
        .batch_execute(
            "ALTER TABLE public.ts_lookup RENAME TO ts_lookup_old;
             CREATE TABLE public.ts_lookup (code text PRIMARY KEY, retired boolean)",
        )
        .unwrap();
    assert!(create_generated(&mut first, "tn_b"), "the connection that kept the statements in memory");
    assert!(view_definition(&mut first, "tn_b.codes").contains("public.ts_lookup_old"));
    let mut second = superuser(db);
    assert!(!create_generated(&mut second, "tn_c"));
    assert!(view_definition(&mut second, "tn_c.codes").contains("public.ts_lookup_old"));

    // The same for its schema moving, and for a role it grants to being renamed.
    second.batch_execute("CREATE SCHEMA ts_archive; ALTER TABLE public.ts_lookup_old SET SCHEMA ts_archive").unwrap();
    assert!(create_generated(&mut first, "tn_d"));
    assert!(view_definition(&mut first, "tn_d.codes").contains("ts_archive.ts_lookup_old"));
    second.batch_execute("ALTER ROLE ts_auditors RENAME TO ts_auditors_old; CREATE ROLE ts_auditors NOLOGIN").unwrap();
    assert!(create_generated(&mut first, "tn_e"));
    let granted = |client: &mut Client, role: &str| {
        client.query_one("SELECT has_table_privilege($1, 'tn_e.codes', 'SELECT')", &[&role]).unwrap().get::<_, bool>(0)
    };
    assert!(granted(&mut second, "ts_auditors_old"));
    assert!(!granted(&mut second, "ts_auditors"), "the new role of the old name is not the template's grantee");
    assert!(!create_generated(&mut second, "tn_f"));

    first.batch_execute("DROP ROLE ts_auditors").unwrap();
    drop((first, second));
    let mut admin = superuser("postgres");
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    admin.batch_execute("DROP ROLE ts_auditors_old").unwrap();
}

#[test]
fn only_the_extension_owner_reads_or_writes_the_stored_statements() {
    let db = "it_template_statements_rights";
    let mut su = fresh_database(db);
    su.batch_execute("CREATE TABLE tenant_template.notes (id int)").unwrap();
    create_ok(&mut su, "tr_a");
    su.batch_execute(
        "DROP ROLE IF EXISTS tr_admin; CREATE ROLE tr_admin LOGIN IN ROLE tenant_control_admin;
         GRANT tr_a_owner TO tr_admin;",
    )
    .unwrap();
    let mut admin = connect_as("tr_admin", db);
    for statement in [
        "SELECT * FROM tenant.template_statements",
        "UPDATE tenant.template_statements SET statements = '[[\"CREATE ROLE x SUPERUSER\"]]'",
        "INSERT INTO tenant.template_statements VALUES (1, '[]', '[]', 0, 0)",
        "DELETE FROM tenant.template_statements",
    ] {
        assert_eq!(sqlstate_of_failure(&mut admin, statement), "42501", "{statement}");
    }
    admin.batch_execute("SET ROLE tr_a_owner").unwrap();
    assert_eq!(sqlstate_of_failure(&mut admin, "DELETE FROM tenant.template_statements"), "42501");
    drop(admin);
    su.batch_execute("DROP OWNED BY tr_admin; DROP ROLE tr_admin").unwrap();
}
