//! Hybrid tenancy: a table shared by institutions, isolated by a forced RLS
//! policy on tenant.current_institution(), which only tenant.set_context can
//! set; institutions without a schema (shared rows only) work the same way.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_shared_tables";

fn visible(app: &mut Client, institution: Uuid) -> Vec<Uuid> {
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{institution}')")).unwrap();
    let rows = app.query("SELECT DISTINCT institution_id FROM public.invoices", &[]).unwrap();
    app.batch_execute("COMMIT").unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[test]
fn a_shared_table_shows_each_institution_its_own_rows_only() {
    let mut su = fresh_database(DB);
    let (a, b, shared_only) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS it_shared_app; CREATE ROLE it_shared_app LOGIN; GRANT tenant_control_app TO it_shared_app;
         CREATE TABLE public.institutions (id uuid PRIMARY KEY);
         INSERT INTO public.institutions VALUES ('{a}'), ('{b}'), ('{shared_only}');
         ALTER DATABASE {DB} SET tenant_control.institutions_table = 'public.institutions';
         CREATE TABLE public.invoices (id serial PRIMARY KEY,
                                       institution_id uuid NOT NULL DEFAULT tenant.current_institution(), amount int);
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices TO PUBLIC;
         GRANT USAGE ON SEQUENCE public.invoices_id_seq TO PUBLIC;
         INSERT INTO public.invoices (institution_id, amount) VALUES ('{a}', 1), ('{a}', 2), ('{b}', 3), ('{shared_only}', 4);
         SELECT tenant.enable_shared_table_isolation('public.invoices');"
    ))
    .unwrap();
    let mut su = superuser(DB);
    create_ok_for(&mut su, a, "sh_alpha");
    create_ok_for(&mut su, b, "sh_beta");

    let mut app = connect_as("it_shared_app", DB);
    assert_eq!(visible(&mut app, a), vec![a]);
    assert_eq!(visible(&mut app, b), vec![b]);
    // An institution with shared rows only has no schema: set_context says so with NULL.
    app.batch_execute("BEGIN").unwrap();
    let schema: Option<String> = app.query_one("SELECT tenant.set_context($1)", &[&shared_only]).unwrap().get(0);
    app.batch_execute("COMMIT").unwrap();
    assert_eq!(schema, None);
    assert_eq!(visible(&mut app, shared_only), vec![shared_only]);

    // Writes are checked too: a row for another institution is refused, the default is the current one.
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{a}')")).unwrap();
    let forged = app.batch_execute(&format!("INSERT INTO public.invoices (institution_id, amount) VALUES ('{b}', 9)"));
    assert_eq!(forged.unwrap_err().code().map(|c| c.code()), Some("42501"));
    app.batch_execute("ROLLBACK").unwrap();
    app.batch_execute(&format!(
        "BEGIN; SELECT tenant.set_context('{a}'); INSERT INTO public.invoices (amount) VALUES (5); COMMIT;"
    ))
    .unwrap();
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.invoices WHERE institution_id = '{a}'")), 3);

    // Outside a context nothing is visible, and nobody can claim an institution by hand.
    assert_eq!(count(&mut app, "SELECT count(*) FROM public.invoices"), 0);
    assert_eq!(sqlstate_of_failure(&mut app, &format!("SET tenant_control.institution_id = '{a}'")), "42501");
    assert_eq!(
        sqlstate_of_failure(&mut app, &format!("SELECT set_config('tenant_control.institution_id', '{a}', false)")),
        "42501"
    );
    // Not even before the library is loaded in the session: the value is discarded when it loads.
    let mut early = connect_as("it_shared_app", DB);
    early.batch_execute(&format!("SET tenant_control.institution_id = '{a}'")).unwrap();
    assert_eq!(count(&mut early, "SELECT count(*) FROM public.invoices"), 0);
    let current: Option<Uuid> = early.query_one("SELECT tenant.current_institution()", &[]).unwrap().get(0);
    assert_eq!(current, None);
    // A tenant's role, once assumed, cannot switch to another institution.
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{a}')")).unwrap();
    let switched = app.batch_execute(&format!("SELECT tenant.set_context('{b}')"));
    assert_eq!(switched.unwrap_err().code().map(|c| c.code()), Some("42501"));
    app.batch_execute("ROLLBACK").unwrap();
}

fn create_ok_for(su: &mut Client, institution: Uuid, schema: &str) {
    let created = create(su, institution, schema);
    assert!(created.ok(), "{}", created.message);
}

#[test]
fn an_application_in_a_tenant_context_reads_its_institution_as_the_tenants_role() {
    const CTX_DB: &str = "it_shared_context";
    let mut su = fresh_database(CTX_DB);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    su.batch_execute(&format!(
        "DROP ROLE IF EXISTS it_context_app; CREATE ROLE it_context_app LOGIN; GRANT tenant_control_app TO it_context_app;
         DROP ROLE IF EXISTS it_context_nobody; CREATE ROLE it_context_nobody LOGIN;
         CREATE TABLE public.notes (institution_id uuid NOT NULL DEFAULT tenant.current_institution(), body text);
         GRANT SELECT, INSERT ON public.notes TO PUBLIC;
         INSERT INTO public.notes VALUES ('{a}', 'for a'), ('{b}', 'for b');
         SELECT tenant.enable_shared_table_isolation('public.notes');"
    ))
    .unwrap();
    create_ok_for(&mut su, a, "shc_alpha");
    create_ok_for(&mut su, b, "shc_beta");

    // A real application login: set_context switches it to the tenant's role,
    // and the tenant's role may ask which institution it is in.
    let mut app = connect_as("it_context_app", CTX_DB);
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{a}')")).unwrap();
    let user: String = app.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(user, "shc_alpha_owner");
    let current: Option<Uuid> = app.query_one("SELECT tenant.current_institution()", &[]).unwrap().get(0);
    assert_eq!(current, Some(a));
    let bodies: Vec<String> = app
        .query("SELECT body FROM public.notes WHERE institution_id = tenant.current_institution()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(bodies, vec!["for a".to_string()]);
    app.batch_execute("INSERT INTO public.notes (body) VALUES ('new for a'); COMMIT").unwrap();
    assert_eq!(count(&mut su, &format!("SELECT count(*) FROM public.notes WHERE institution_id = '{a}'")), 2);

    // USAGE on the schema tenant exposes current_institution() and nothing else to other roles.
    let executable: Vec<String> = su
        .query(
            "SELECT p.proname::text FROM pg_proc p WHERE p.pronamespace = 'tenant'::regnamespace
                AND has_function_privilege('it_context_nobody', p.oid, 'EXECUTE') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(executable, vec!["current_institution".to_string()]);
    let readable = count(
        &mut su,
        "SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'tenant'::regnamespace
            AND (CASE WHEN c.relkind = 'S'
                      THEN has_sequence_privilege('it_context_nobody', c.oid, 'USAGE, SELECT, UPDATE')
                      ELSE has_table_privilege('it_context_nobody', c.oid,
                                               'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') END)",
    );
    assert_eq!(readable, 0);
    let mut nobody = connect_as("it_context_nobody", CTX_DB);
    assert_eq!(sqlstate_of_failure(&mut nobody, "SELECT * FROM tenant.tenant_schemas"), "42501");
    assert_eq!(sqlstate_of_failure(&mut nobody, &format!("SELECT tenant.enter_context('{a}')")), "42501");
}
