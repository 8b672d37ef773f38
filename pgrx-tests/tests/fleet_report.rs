//! Cross-institution reports: a fleet view follows institutions as they are
//! created, dropped, suspended and migrated, shows each reader only the
//! institutions whose role it has (all of them to platform administrators),
//! and tenant.fleet_report totals a query over the fleet.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_fleet_report";

fn schema_id(db: &mut Client, schema: &str) -> Uuid {
    db.query_one("SELECT id FROM tenant.tenant_schemas WHERE schema_name = $1 AND status <> 'DROPPED'", &[&schema])
        .unwrap()
        .get(0)
}

fn schemas_in_view(db: &mut Client) -> Vec<String> {
    db.query("SELECT DISTINCT schema_name FROM tenant.all_students ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn add_institution(db: &mut Client, schema: &str, students: i32) {
    let id = Uuid::new_v4();
    assert!(create(db, id, schema).ok());
    db.batch_execute(&format!(
        "INSERT INTO {schema}.students SELECT g, '{schema}-' || g FROM generate_series(1, {students}) g"
    ))
    .unwrap();
}

fn login_role(db: &mut Client, role: &str, grants: &str) -> Client {
    db.batch_execute(&format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
             EXECUTE 'DROP OWNED BY {role}'; EXECUTE 'DROP ROLE {role}'; END IF; END $$;
         CREATE ROLE {role} LOGIN; {grants}"
    ))
    .unwrap();
    connect_as(role, DB)
}

#[test]
fn a_fleet_view_follows_creates_drops_suspensions_and_migrations() {
    let mut db = fresh_database(DB);
    db.batch_execute("CREATE TABLE tenant_template.students (id int PRIMARY KEY, name text NOT NULL)").unwrap();
    add_institution(&mut db, "rep_a", 2);
    add_institution(&mut db, "rep_b", 3);
    let message: String =
        db.query_one("SELECT tenant.create_fleet_view('students', 'all_students')", &[]).unwrap().get(0);
    assert!(message.contains("2 institution(s)"), "{message}");
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.all_students"), 5);
    let row = db
        .query_one("SELECT institution_id, name FROM tenant.all_students WHERE schema_name = 'rep_a' AND id = 2", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "rep_a-2");
    let institution: Uuid = row.get(0);
    assert_eq!(
        count(&mut db, &format!("SELECT count(*) FROM tenant.tenant_schemas WHERE institution_id = '{institution}' AND schema_name = 'rep_a'")),
        1
    );

    add_institution(&mut db, "rep_c", 4);
    assert_eq!(schemas_in_view(&mut db), ["rep_a", "rep_b", "rep_c"]);
    let b = schema_id(&mut db, "rep_b");
    assert!(call(&mut db, "suspend_institution", b).ok());
    assert_eq!(schemas_in_view(&mut db), ["rep_a", "rep_c"]);
    assert!(call(&mut db, "activate_institution", b).ok());
    assert_eq!(schemas_in_view(&mut db), ["rep_a", "rep_b", "rep_c"]);
    let c = schema_id(&mut db, "rep_c");
    assert!(call(&mut db, "drop_institution_schema", c).ok());
    assert_eq!(schemas_in_view(&mut db), ["rep_a", "rep_b"]);

    // A migration adds a column: NULL until each institution is migrated.
    db.batch_execute(
        "SELECT * FROM tenant.register_migration(1, 'ALTER TABLE students ADD COLUMN grade int DEFAULT 7', 'grades')",
    )
    .unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.all_students WHERE grade IS NULL"), 5);
    db.batch_execute("CALL tenant.apply_migrations()").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.all_students WHERE grade = 7"), 5);
    // A migration that drops a column the view shows is not blocked by the view.
    db.batch_execute("SELECT * FROM tenant.register_migration(2, 'ALTER TABLE students DROP COLUMN name', 'no names')")
        .unwrap();
    db.batch_execute("CALL tenant.apply_migrations()").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.tenant_schemas WHERE status = 'ACTIVE' AND version = 2"), 2);
    let columns: Vec<String> = db
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'tenant.all_students'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["institution_id", "schema_name", "id", "grade"]);

    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.create_fleet_view('students', 'all_students')"), "42P07");
    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.create_fleet_view('nope', 'x')"), "42P01");
    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.create_fleet_view('students', 'Bad Name')"), "42602");
    db.batch_execute("SELECT tenant.drop_fleet_view('all_students')").unwrap();
    assert_eq!(count(&mut db, "SELECT count(*) FROM pg_class WHERE relname = 'all_students'"), 0);
    assert_eq!(sqlstate_of_failure(&mut db, "SELECT tenant.drop_fleet_view('all_students')"), "42704");
}

#[test]
fn each_reader_sees_only_the_institutions_whose_role_it_has() {
    let mut db = fresh_database(DB);
    db.batch_execute("CREATE TABLE tenant_template.students (id int PRIMARY KEY, name text NOT NULL)").unwrap();
    add_institution(&mut db, "see_a", 2);
    add_institution(&mut db, "see_b", 3);
    db.batch_execute("SELECT tenant.create_fleet_view('students', 'all_students')").unwrap();
    // USAGE on schema tenant comes with tenant_control_app here.
    let mut member_of_a = login_role(&mut db, "it_see_a", "GRANT see_a_owner, tenant_control_app TO it_see_a;");
    assert_eq!(schemas_in_view(&mut member_of_a), ["see_a"]);
    // Even naming the other institution, or with a leaky function, nothing of B shows.
    assert_eq!(count(&mut member_of_a, "SELECT count(*) FROM tenant.all_students WHERE schema_name = 'see_b'"), 0);
    let mut nobody = login_role(&mut db, "it_see_none", "GRANT tenant_control_app TO it_see_none;");
    assert_eq!(count(&mut nobody, "SELECT count(*) FROM tenant.all_students"), 0);
    let mut admin = login_role(&mut db, "it_see_admin", "GRANT tenant_control_admin TO it_see_admin;");
    assert_eq!(count(&mut admin, "SELECT count(*) FROM tenant.all_students"), 5);
}

#[test]
fn fleet_report_gives_per_institution_figures_and_totals() {
    let mut db = fresh_database(DB);
    db.batch_execute("CREATE TABLE tenant_template.students (id int PRIMARY KEY, name text NOT NULL)").unwrap();
    add_institution(&mut db, "tot_a", 2);
    add_institution(&mut db, "tot_b", 3);
    add_institution(&mut db, "tot_c", 1);
    db.batch_execute("DROP TABLE tot_c.students").unwrap();
    let rows = db
        .query(
            "SELECT schema_name, status, figures FROM tenant.fleet_report('SELECT count(*) AS students, 1 AS one FROM students')",
            &[],
        )
        .unwrap();
    let got: Vec<(Option<String>, String, Option<serde_json::Value>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], (Some("tot_a".into()), "SUCCESS".into(), Some(serde_json::json!({"students": 2, "one": 1}))));
    assert_eq!(got[2].1, "ERROR");
    assert_eq!(got[3], (None, "TOTAL".into(), Some(serde_json::json!({"students": 5, "one": 2}))));
}
