// tenant.check_integrity (included into the `tests` module after tests_template.rs).

/// One finding: (check_name, severity, object, fixed, detail).
type Found = (String, String, String, bool, String);

fn check(arguments: &str) -> Vec<Found> {
    Spi::connect_mut(|c| {
        c.update(
            &format!("SELECT check_name, severity, object, fixed, detail FROM tenant.check_integrity({arguments}) ORDER BY 1, 3"),
            None,
            &[],
        )
        .unwrap()
        .map(|row| {
            (
                row.get::<String>(1).unwrap().unwrap(),
                row.get::<String>(2).unwrap().unwrap(),
                row.get::<String>(3).unwrap().unwrap(),
                row.get::<bool>(4).unwrap().unwrap(),
                row.get::<String>(5).unwrap().unwrap(),
            )
        })
        .collect()
    })
}

fn tenant_check(id: &str, fix: bool) -> Vec<Found> {
    check(&format!("'{id}'::uuid, fix => {fix}"))
}

fn found<'a>(findings: &'a [Found], check_name: &str, object: &str) -> &'a Found {
    findings
        .iter()
        .find(|f| f.0 == check_name && f.2 == object)
        .unwrap_or_else(|| panic!("no {check_name} finding for {object} in {findings:#?}"))
}

fn created(institution: &str, schema: &str) -> String {
    let (status, message, id, _) = create(institution, Some(schema));
    assert_eq!(status, "SUCCESS", "{message}");
    let id = id.unwrap();
    Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
    id
}

#[pg_test]
fn a_faithful_copy_passes_the_integrity_check() {
    fill_template();
    let id = created("d1d1d1d1-0000-4000-8000-000000000001", "ok_copy");
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
    assert_eq!(
        one::<String>(&format!(
            "SELECT status || '/' || (metadata->>'fix') || '/' || (metadata->>'errors') FROM tenant.schema_operations
              WHERE operation_type = 'INTEGRITY_CHECK' AND schema_id = '{id}'"
        )),
        Some("COMPLETED/false/0".into())
    );
}

#[pg_test]
fn drift_is_found_object_by_object_and_fix_repairs_what_it_can() {
    fill_template();
    let id = created("d1d1d1d1-0000-4000-8000-000000000002", "drifted");
    Spi::run(
        "DROP TABLE drifted.enrolments CASCADE;
         ALTER TABLE drifted.students ADD COLUMN nickname text;
         ALTER TABLE drifted.students DISABLE ROW LEVEL SECURITY;
         DROP INDEX drifted.students_lower_name;
         DROP POLICY adults ON drifted.students;
         ALTER TABLE drifted.courses ALTER COLUMN code DROP NOT NULL;
         INSERT INTO drifted.students (name, age) VALUES ('Ann', 20);",
    )
    .unwrap();
    let before = tenant_check(&id, false);
    assert_eq!(found(&before, "missing_object", "table enrolments").1, "ERROR");
    found(&before, "missing_object", "view student_courses");
    found(&before, "missing_object", "materialized view course_counts");
    found(&before, "missing_object", "index students.students_lower_name");
    found(&before, "missing_object", "policy students.adults");
    assert_eq!(found(&before, "extra_object", "column students.nickname").1, "WARNING");
    assert!(found(&before, "row_level_security", "students").4.contains("DISABLE, FORCE"));
    assert!(found(&before, "changed_object", "column courses.code").4.contains("text NOT NULL"));
    found(&before, "table_count", "drifted");
    // The parts of a missing table are not listed one by one.
    assert!(!before.iter().any(|f| f.2.starts_with("column enrolments.") || f.2.starts_with("constraint enrolments.")), "{before:#?}");
    assert!(before.iter().all(|f| !f.3), "nothing is fixed without fix => true");

    let fixed = tenant_check(&id, true);
    for object in ["table enrolments", "view student_courses", "materialized view course_counts",
                   "index students.students_lower_name", "policy students.adults"] {
        assert!(found(&fixed, "missing_object", object).3, "{object} not fixed: {fixed:#?}");
    }
    assert!(found(&fixed, "row_level_security", "students").3);
    // Counters are compared after the repairs: the recreated table is counted.
    assert!(!fixed.iter().any(|f| f.0 == "table_count"), "{fixed:#?}");
    // Extra and changed objects may hold data: reported, never dropped or altered.
    assert!(!found(&fixed, "extra_object", "column students.nickname").3);
    assert!(!found(&fixed, "changed_object", "column courses.code").3);
    assert_eq!(one::<String>("SELECT name FROM drifted.students"), Some("Ann".into()));
    assert_eq!(
        one::<String>("SELECT format('%s/%s', relrowsecurity, relforcerowsecurity) FROM pg_class WHERE oid = 'drifted.students'::regclass"),
        Some("t/t".into())
    );
    // The recreated table works with the tenant's own objects and privileges.
    Spi::run("INSERT INTO drifted.courses (code) VALUES ('x'); INSERT INTO drifted.enrolments SELECT s.id, c.id FROM drifted.students s, drifted.courses c").unwrap();
    assert_eq!(one::<i64>("SELECT count(*) FROM drifted.student_courses"), Some(1));
    assert_eq!(one::<bool>("SELECT has_table_privilege('drifted_owner', 'drifted.enrolments', 'INSERT')"), Some(true));

    Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
    let after = tenant_check(&id, false);
    let checks: Vec<(&str, &str)> = after.iter().map(|f| (f.0.as_str(), f.2.as_str())).collect();
    assert_eq!(checks, vec![("changed_object", "column courses.code"), ("extra_object", "column students.nickname")], "{after:#?}");
    Spi::run("ALTER TABLE drifted.students DROP COLUMN nickname; ALTER TABLE drifted.courses ALTER COLUMN code SET NOT NULL").unwrap();
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
}

#[pg_test]
fn orphaned_rows_are_found_behind_dropped_and_not_valid_keys() {
    fill_template();
    let id = created("d1d1d1d1-0000-4000-8000-000000000003", "orphans");
    Spi::run(
        "INSERT INTO orphans.students (name, age) VALUES ('Ann', 20);
         INSERT INTO orphans.courses (code) VALUES ('x');
         ALTER TABLE orphans.enrolments DROP CONSTRAINT enrolments_student_id_fkey;
         ALTER TABLE orphans.enrolments DROP CONSTRAINT enrolments_course_id_fkey;
         INSERT INTO orphans.enrolments VALUES (999, 1), (100, 999), (100, 1);
         ALTER TABLE orphans.enrolments ADD CONSTRAINT enrolments_course_id_fkey FOREIGN KEY (course_id) REFERENCES orphans.courses (id) NOT VALID;",
    )
    .unwrap();
    let before = tenant_check(&id, false);
    found(&before, "missing_object", "constraint enrolments.enrolments_student_id_fkey");
    let dropped = found(&before, "orphaned_rows", "enrolments.enrolments_student_id_fkey");
    assert!(dropped.4.starts_with("1 row(s)") && dropped.4.contains("missing from the schema"), "{}", dropped.4);
    let not_valid = found(&before, "orphaned_rows", "enrolments.enrolments_course_id_fkey");
    assert!(not_valid.4.contains("NOT VALID"), "{}", not_valid.4);
    assert_eq!(before.iter().filter(|f| f.0 == "orphaned_rows").count(), 2);

    // The key cannot come back while rows break it; the rows are not deleted.
    let fixed = tenant_check(&id, true);
    let key = found(&fixed, "missing_object", "constraint enrolments.enrolments_student_id_fkey");
    assert!(!key.3 && key.4.contains("23503"), "{}", key.4);
    assert_eq!(one::<i64>("SELECT count(*) FROM orphans.enrolments"), Some(3));

    Spi::run("DELETE FROM orphans.enrolments WHERE (student_id, course_id) <> (100, 1)").unwrap();
    assert!(found(&tenant_check(&id, true), "missing_object", "constraint enrolments.enrolments_student_id_fkey").3);
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
}

#[pg_test]
fn registry_and_catalog_disagreements_are_found_and_fixed() {
    fill_template();
    let id = created("d1d1d1d1-0000-4000-8000-000000000004", "vanished");
    // A spare of the warm pool whose registry row was deleted behind the extension's back.
    let spare = one::<String>("SELECT schema_id::text FROM tenant.add_spare_schema()").unwrap();
    let spare_name = one::<String>(&format!("SELECT schema_name FROM tenant.tenant_schemas WHERE id = '{spare}'")).unwrap();
    Spi::run(&format!("DELETE FROM tenant.schema_operations WHERE schema_id = '{spare}'; DELETE FROM tenant.tenant_schemas WHERE id = '{spare}'")).unwrap();
    Spi::run("INSERT INTO vanished.students (name, age) VALUES ('Gone', 30)").unwrap();
    Spi::run(
        "DROP SCHEMA vanished CASCADE;
         CREATE ROLE squatter_owner NOLOGIN;
         CREATE SCHEMA squatter AUTHORIZATION squatter_owner;
         CREATE TABLE squatter.notes (body text);
         INSERT INTO squatter.notes VALUES ('keep me');
         CREATE SCHEMA tc_backup_0123456789abcdef0123456789abcdef;
         CREATE ROLE lonely_owner NOLOGIN;",
    )
    .unwrap();
    let mine = |findings: Vec<Found>| -> Vec<Found> {
        findings.into_iter().filter(|f| ["vanished", "squatter", "lonely_owner", spare_name.as_str()].contains(&f.2.as_str()) || f.2.starts_with("tc_backup_0123")).collect()
    };
    let everything = check("fix => false");
    assert!(!everything.iter().any(|f| f.2.starts_with("pg_")), "built-in roles such as pg_database_owner are not tenants': {everything:#?}");
    let before = mine(everything);
    assert_eq!(found(&before, "schema_missing", "vanished").1, "ERROR");
    assert_eq!(found(&before, "unregistered_schema", "squatter").1, "ERROR");
    found(&before, "orphan_backup_schema", "tc_backup_0123456789abcdef0123456789abcdef");
    assert_eq!(found(&before, "orphan_role", "lonely_owner").1, "WARNING");
    found(&before, "unregistered_schema", &spare_name);
    assert_eq!(before.len(), 5, "{before:#?}");

    let fixed = mine(check("fix => true"));
    assert!(found(&fixed, "schema_missing", "vanished").4.contains("restore the tenant's data from a backup"));
    assert!(found(&fixed, "schema_missing", "vanished").3);
    assert!(found(&fixed, "unregistered_schema", "squatter").3);
    // A faithful spare goes back to the warm pool; anything else is quarantined.
    assert!(found(&fixed, "unregistered_schema", &spare_name).4.contains("registered as a SPARE"));
    assert_eq!(one::<bool>(&format!("SELECT ready FROM tenant.warm_pool WHERE schema_name = '{spare_name}'")), Some(true));
    assert!(found(&fixed, "orphan_backup_schema", "tc_backup_0123456789abcdef0123456789abcdef").3);
    assert!(!found(&fixed, "orphan_role", "lonely_owner").3, "roles are reported, not dropped");
    // The schema is back, empty, locked away until a restore; the squatter's data is kept, out of reach.
    assert_eq!(one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")), Some("MAINTENANCE".into()));
    assert_eq!(one::<i64>("SELECT count(*) FROM vanished.students"), Some(0));
    assert_eq!(one::<bool>("SELECT has_schema_privilege('vanished_owner', 'vanished', 'USAGE')"), Some(false));
    let quarantined = one::<String>(
        "SELECT nspname::text FROM pg_namespace n WHERE starts_with(nspname, 'tc_quarantine_')
            AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'notes')",
    )
    .unwrap();
    assert_eq!(one::<String>(&format!("SELECT body FROM {quarantined}.notes")), Some("keep me".into()));
    assert_eq!(one::<bool>(&format!("SELECT has_schema_privilege('{quarantined}_owner', '{quarantined}', 'USAGE')")), Some(false));
    assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname IN ('squatter', 'tc_backup_0123456789abcdef0123456789abcdef')"), Some(0));

    Spi::run("DROP ROLE lonely_owner").unwrap();
    assert_eq!(mine(check("fix => false")), Vec::<Found>::new());
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
    assert_eq!(
        one::<i64>("SELECT count(*) FROM tenant.schema_operations WHERE operation_type = 'INTEGRITY_CHECK' AND schema_id IS NULL AND status = 'COMPLETED'"),
        Some(3)
    );
}

#[pg_test]
fn references_to_another_tenant_and_privileges_are_checked() {
    fill_template();
    let a = created("d1d1d1d1-0000-4000-8000-000000000005", "nosy_a");
    created("d1d1d1d1-0000-4000-8000-000000000006", "nosy_b");
    Spi::run("CREATE VIEW nosy_a.peek AS SELECT name FROM nosy_b.students; GRANT USAGE ON SCHEMA nosy_a TO PUBLIC").unwrap();
    Spi::run("CREATE FUNCTION nosy_a.leak() RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RETURN (SELECT count(*) FROM Nosy_B.students); END'").unwrap();
    Spi::run("CREATE FUNCTION nosy_a.wander() RETURNS int LANGUAGE sql SET search_path = nosy_b, pg_temp AS 'SELECT 1'").unwrap();
    let findings = tenant_check(&a, true);
    assert!(found(&findings, "cross_tenant_reference", "function leak()").4.contains("nosy_b"), "{findings:#?}");
    assert!(found(&findings, "cross_tenant_reference", "function wander()").4.contains("nosy_b"), "{findings:#?}");
    assert!(found(&findings, "cross_tenant_reference", "view nosy_a.peek").4.contains("nosy_b"), "{findings:#?}");
    assert!(!found(&findings, "extra_object", "view peek").3);
    assert!(found(&findings, "schema_privileges", "nosy_a").3);
    assert_eq!(one::<bool>("SELECT has_schema_privilege('public', 'nosy_a', 'USAGE')"), Some(false));
    assert_eq!(one::<bool>("SELECT has_schema_privilege('nosy_a_owner', 'nosy_a', 'USAGE')"), Some(true));
}

#[pg_test]
fn a_tenant_behind_the_template_is_compared_once_migrated() {
    Spi::run("CREATE TABLE tenant_template.items (id int PRIMARY KEY)").unwrap();
    let id = created("d1d1d1d1-0000-4000-8000-000000000007", "lagging");
    Spi::run("SELECT * FROM tenant.register_migration(1, 'ALTER TABLE items ADD COLUMN label text', 'label')").unwrap();
    let findings = tenant_check(&id, false);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(found(&findings, "version_behind", "lagging").4.contains("version 0 of 1"));
    Spi::run(&format!("SELECT * FROM tenant.migrate_institution_schema('{id}')")).unwrap();
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
}

#[pg_test(error = "no institution schema with id 00000000-0000-4000-8000-000000000000 in tenant.tenant_schemas")]
fn checking_an_unknown_tenant_is_an_error() {
    check("'00000000-0000-4000-8000-000000000000'::uuid");
}

#[pg_test]
fn a_lost_tenant_role_is_recreated_with_its_privileges() {
    fill_template();
    let id = created("d1d1d1d1-0000-4000-8000-000000000008", "roleless");
    // DROP OWNED takes the role's grants and the policy that names only it along.
    Spi::run("DROP OWNED BY roleless_owner; DROP ROLE roleless_owner").unwrap();
    let before = tenant_check(&id, false);
    assert_eq!(found(&before, "role_missing", "roleless_owner").1, "ERROR");
    found(&before, "missing_object", "policy students.writers");
    let fixed = tenant_check(&id, true);
    assert!(found(&fixed, "role_missing", "roleless_owner").3, "{fixed:#?}");
    assert!(found(&fixed, "missing_object", "policy students.writers").3, "{fixed:#?}");
    assert_eq!(one::<bool>("SELECT has_schema_privilege('roleless_owner', 'roleless', 'USAGE, CREATE')"), Some(true));
    assert_eq!(one::<bool>("SELECT has_table_privilege('roleless_owner', 'roleless.students', 'INSERT')"), Some(true));
    assert_eq!(one::<bool>("SELECT pg_has_role('tenant_control_app', 'roleless_owner', 'MEMBER')"), Some(true));
    assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
}
