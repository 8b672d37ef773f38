//! The application's institutions table wired to the registry
//! (tenant.link_institutions_table): inserting, deleting and changing the
//! status of an institution there creates, drops and suspends its schema; a
//! failing creation either fails the application's insert with the reason or,
//! with on_failure => 'retry', keeps the row and is retried later.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_fleet_link";

fn registry_status(db: &mut Client, institution: Uuid) -> Option<String> {
    db.query_opt(
        "SELECT status FROM tenant.tenant_schemas WHERE institution_id = $1 ORDER BY created_at DESC LIMIT 1",
        &[&institution],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// The role name the default schema of this institution would get.
fn default_role(institution: Uuid) -> String {
    format!("inst_{}_owner", institution.to_string().replace('-', "_"))
}

fn linked_database() -> Client {
    let mut db = fresh_database(DB);
    db.batch_execute(&format!(
        "CREATE TABLE public.institutions (id uuid PRIMARY KEY, name text NOT NULL, state text NOT NULL DEFAULT 'active');
         CREATE TABLE tenant_template.students (id int PRIMARY KEY);
         ALTER DATABASE {DB} SET tenant_control.institutions_table = 'public.institutions';
         DROP ROLE IF EXISTS it_link_app; CREATE ROLE it_link_app LOGIN;
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.institutions TO it_link_app;"
    ))
    .unwrap();
    // The setting applies to new connections.
    superuser(DB)
}

#[test]
fn the_institutions_table_creates_suspends_and_drops_schemas() {
    let mut db = linked_database();
    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.link_institutions_table('nope')"), "42703");
    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.link_institutions_table('state', 'sometimes')"), "22023");
    db.batch_execute("SELECT tenant.link_institutions_table('state')").unwrap();

    // The application (not a superuser, no rights on schema tenant) inserts.
    let mut app = connect_as("it_link_app", DB);
    let id = Uuid::new_v4();
    app.execute("INSERT INTO public.institutions (id, name) VALUES ($1, 'Acme')", &[&id]).unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("ACTIVE"));
    let schema: String =
        db.query_one("SELECT schema_name FROM tenant.tenant_schemas WHERE institution_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(count(&mut db, &format!("SELECT count(*) FROM {schema}.students")), 0);

    app.execute("UPDATE public.institutions SET state = 'Suspended' WHERE id = $1", &[&id]).unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("SUSPENDED"));
    app.execute("UPDATE public.institutions SET state = 'maintenance' WHERE id = $1", &[&id]).unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("MAINTENANCE"));
    app.execute("UPDATE public.institutions SET state = 'ACTIVE' WHERE id = $1", &[&id]).unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("ACTIVE"));
    // A value that maps to nothing is refused and changes nothing.
    let code =
        sqlstate_of_failure(&mut app, &format!("UPDATE public.institutions SET state = 'bogus' WHERE id = '{id}'"));
    assert_eq!(code, "22023");
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM public.institutions WHERE id = '{id}' AND state = 'ACTIVE'")),
        1
    );

    app.execute("DELETE FROM public.institutions WHERE id = $1", &[&id]).unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("DROPPED"));
    assert_eq!(
        count(
            &mut db,
            &format!(
                "SELECT count(*) FROM tenant.schema_backups b JOIN tenant.tenant_schemas t ON t.id = b.schema_id WHERE t.institution_id = '{id}'"
            )
        ),
        1
    );

    let message: String = db.query_one("SELECT tenant.unlink_institutions_table()", &[]).unwrap().get(0);
    assert!(message.contains("public.institutions"), "{message}");
    let later = Uuid::new_v4();
    app.execute("INSERT INTO public.institutions (id, name) VALUES ($1, 'Later')", &[&later]).unwrap();
    assert_eq!(registry_status(&mut db, later), None);
}

#[test]
fn a_failing_creation_fails_the_insert_or_is_kept_for_retry() {
    let mut db = linked_database();
    db.batch_execute("SELECT tenant.link_institutions_table()").unwrap();
    // A role of the name the new schema needs already exists: creation fails.
    let id = Uuid::new_v4();
    db.batch_execute(&format!("DROP ROLE IF EXISTS {r}; CREATE ROLE {r}", r = default_role(id))).unwrap();
    let code =
        sqlstate_of_failure(&mut db, &format!("INSERT INTO public.institutions (id, name) VALUES ('{id}', 'Blocked')"));
    assert_eq!(code, "42710");
    assert_eq!(count(&mut db, &format!("SELECT count(*) FROM public.institutions WHERE id = '{id}'")), 0);

    // The application's other choice: keep the row, retry later.
    db.batch_execute("SELECT tenant.link_institutions_table(on_failure => 'retry')").unwrap();
    let (mut app, notices) = listening_as("it_link_app", DB);
    app.execute("INSERT INTO public.institutions (id, name) VALUES ($1, 'Blocked')", &[&id]).unwrap();
    assert!(notices.lock().unwrap().iter().any(|n| n.contains("kept for retry")), "{:?}", notices.lock().unwrap());
    assert_eq!(count(&mut db, &format!("SELECT count(*) FROM public.institutions WHERE id = '{id}'")), 1);
    assert_eq!(registry_status(&mut db, id), None);
    let failed: String = db
        .query_one(
            "SELECT sqlstate FROM tenant.institution_link_failures WHERE institution_id = $1 AND action = 'CREATE'",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(failed, "42710");
    db.batch_execute("CALL tenant.retry_institution_links()").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.institution_link_failures"), 1, "still blocked");
    db.batch_execute(&format!("DROP ROLE {}", default_role(id))).unwrap();
    db.batch_execute("CALL tenant.retry_institution_links()").unwrap();
    assert_eq!(registry_status(&mut db, id).as_deref(), Some("ACTIVE"));
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.institution_link_failures"), 0);
    db.batch_execute("SELECT tenant.unlink_institutions_table()").unwrap();
}
