//! tenant.check_integrity (included into the `tests` module after tests_template.rs).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// One finding: (check_name, severity, object, fixed, detail).
    pub(crate) type Found = (String, String, String, bool, String);

    pub(crate) fn check(arguments: &str) -> Vec<Found> {
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

    pub(crate) fn tenant_check(id: &str, fix: bool) -> Vec<Found> {
        check(&format!("'{id}'::uuid, fix => {fix}"))
    }

    pub(crate) fn found<'a>(findings: &'a [Found], check_name: &str, object: &str) -> &'a Found {
        findings
            .iter()
            .find(|f| f.0 == check_name && f.2 == object)
            .unwrap_or_else(|| panic!("no {check_name} finding for {object} in {findings:#?}"))
    }

    pub(crate) fn created(institution: &str, schema: &str) -> String {
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
        assert!(
            !before.iter().any(|f| f.2.starts_with("column enrolments.") || f.2.starts_with("constraint enrolments.")),
            "{before:#?}"
        );
        assert!(before.iter().all(|f| !f.3), "nothing is fixed without fix => true");

        let fixed = tenant_check(&id, true);
        for object in [
            "table enrolments",
            "view student_courses",
            "materialized view course_counts",
            "index students.students_lower_name",
            "policy students.adults",
        ] {
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
        assert_eq!(
            one::<bool>("SELECT has_table_privilege('drifted_owner', 'drifted.enrolments', 'INSERT')"),
            Some(true)
        );

        Spi::run(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        let after = tenant_check(&id, false);
        let checks: Vec<(&str, &str)> = after.iter().map(|f| (f.0.as_str(), f.2.as_str())).collect();
        assert_eq!(
            checks,
            vec![("changed_object", "column courses.code"), ("extra_object", "column students.nickname")],
            "{after:#?}"
        );
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
        assert!(
            found(&tenant_check(&id, true), "missing_object", "constraint enrolments.enrolments_student_id_fkey").3
        );
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
    }

    /// A valid key guarantees nothing about rows written while its triggers
    /// did not fire (session_replication_role = replica leaves no trace in
    /// the catalogs), so every key whose child has rows is checked; a key
    /// whose child table has no rows is not read at all.
    #[pg_test]
    fn rows_written_past_a_valid_key_are_found_and_empty_tables_are_not_read() {
        fill_template();
        let id = created("d1d1d1d1-0000-4000-8000-000000000009", "bypassed");
        let scans = |table: &str| {
            one::<i64>(&format!("SELECT pg_stat_get_xact_numscans('bypassed.{table}'::regclass)")).unwrap()
        };
        let (students, enrolments) = (scans("students"), scans("enrolments"));
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
        assert_eq!((scans("students"), scans("enrolments")), (students, enrolments), "empty tables were read");

        Spi::run(
            "INSERT INTO bypassed.students (name, age) VALUES ('Ann', 20);
             INSERT INTO bypassed.courses (code) VALUES ('x');
             SET LOCAL session_replication_role = replica;
             INSERT INTO bypassed.enrolments (student_id, course_id) SELECT 999, id FROM bypassed.courses;
             SET LOCAL session_replication_role = origin;",
        )
        .unwrap();
        let after = tenant_check(&id, false);
        let bypassed = found(&after, "orphaned_rows", "enrolments.enrolments_student_id_fkey");
        assert!(bypassed.4.starts_with("1 row(s)") && bypassed.4.contains("valid, yet bypassed"), "{}", bypassed.4);
        assert_eq!(after.iter().filter(|f| f.0 == "orphaned_rows").count(), 1, "{after:#?}");
        assert!(scans("enrolments") > enrolments, "a table with rows must be read");
    }

    #[pg_test]
    fn registry_and_catalog_disagreements_are_found_and_fixed() {
        fill_template();
        let id = created("d1d1d1d1-0000-4000-8000-000000000004", "vanished");
        // A spare of the warm pool whose registry row was deleted behind the extension's back.
        let spare = one::<String>("SELECT schema_id::text FROM tenant.add_spare_schema()").unwrap();
        let spare_name =
            one::<String>(&format!("SELECT schema_name FROM tenant.tenant_schemas WHERE id = '{spare}'")).unwrap();
        Spi::run(&format!("DELETE FROM tenant.schema_operations WHERE schema_id = '{spare}'; DELETE FROM tenant.tenant_schemas WHERE id = '{spare}'")).unwrap();
        Spi::run("INSERT INTO vanished.students (name, age) VALUES ('Gone', 30)").unwrap();
        Spi::run(
            "DROP SCHEMA vanished CASCADE;
         CREATE ROLE squatter_owner NOLOGIN;
         CREATE SCHEMA squatter AUTHORIZATION squatter_owner;
         CREATE TABLE squatter.notes (body text);
         INSERT INTO squatter.notes VALUES ('keep me');
         CREATE SCHEMA tc_backup_0123456789abcdef0123456789abcdef;
         CREATE ROLE lonely_owner NOLOGIN;
         CREATE SCHEMA lent;
         GRANT USAGE ON SCHEMA lent TO squatter_owner;",
        )
        .unwrap();
        let mine = |findings: Vec<Found>| -> Vec<Found> {
            findings
                .into_iter()
                .filter(|f| {
                    ["vanished", "squatter", "lent", "lonely_owner", spare_name.as_str()].contains(&f.2.as_str())
                        || f.2.starts_with("tc_backup_0123")
                })
                .collect()
        };
        let everything = check("fix => false");
        assert!(
            !everything.iter().any(|f| f.2.starts_with("pg_")),
            "built-in roles such as pg_database_owner are not tenants': {everything:#?}"
        );
        let before = mine(everything);
        assert_eq!(found(&before, "schema_missing", "vanished").1, "ERROR");
        assert_eq!(found(&before, "unregistered_schema", "squatter").1, "ERROR");
        // Owned by the superuser, but open to a tenant-style role.
        assert_eq!(found(&before, "unregistered_schema", "lent").1, "ERROR");
        found(&before, "orphan_backup_schema", "tc_backup_0123456789abcdef0123456789abcdef");
        assert_eq!(found(&before, "orphan_role", "lonely_owner").1, "WARNING");
        found(&before, "unregistered_schema", &spare_name);
        assert_eq!(before.len(), 6, "{before:#?}");

        let fixed = mine(check("fix => true"));
        assert!(found(&fixed, "schema_missing", "vanished").4.contains("restore the tenant's data from a backup"));
        assert!(found(&fixed, "schema_missing", "vanished").3);
        assert!(found(&fixed, "unregistered_schema", "squatter").3);
        assert!(found(&fixed, "unregistered_schema", "lent").4.contains("quarantined"));
        // A faithful spare goes back to the warm pool; anything else is quarantined.
        assert!(found(&fixed, "unregistered_schema", &spare_name).4.contains("registered as a SPARE"));
        assert_eq!(
            one::<bool>(&format!("SELECT ready FROM tenant.warm_pool WHERE schema_name = '{spare_name}'")),
            Some(true)
        );
        assert!(found(&fixed, "orphan_backup_schema", "tc_backup_0123456789abcdef0123456789abcdef").3);
        assert!(!found(&fixed, "orphan_role", "lonely_owner").3, "roles are reported, not dropped");
        // The schema is back, empty, locked away until a restore; the squatter's data is kept, out of reach.
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some("MAINTENANCE".into())
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM vanished.students"), Some(0));
        assert_eq!(one::<bool>("SELECT has_schema_privilege('vanished_owner', 'vanished', 'USAGE')"), Some(false));
        let quarantined = one::<String>(
            "SELECT nspname::text FROM pg_namespace n WHERE starts_with(nspname, 'tc_quarantine_')
            AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'notes')",
        )
        .unwrap();
        assert_eq!(one::<String>(&format!("SELECT body FROM {quarantined}.notes")), Some("keep me".into()));
        assert_eq!(
            one::<bool>(&format!("SELECT has_schema_privilege('{quarantined}_owner', '{quarantined}', 'USAGE')")),
            Some(false)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname IN ('squatter', 'lent', 'tc_backup_0123456789abcdef0123456789abcdef')"), Some(0));

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
        Spi::run("CREATE VIEW nosy_a.peek AS SELECT name FROM nosy_b.students; GRANT USAGE ON SCHEMA nosy_a TO PUBLIC")
            .unwrap();
        Spi::run("CREATE FUNCTION nosy_a.leak() RETURNS bigint LANGUAGE plpgsql AS 'BEGIN RETURN (SELECT count(*) FROM Nosy_B.students); END'").unwrap();
        Spi::run(
            "CREATE FUNCTION nosy_a.wander() RETURNS int LANGUAGE sql SET search_path = nosy_b, pg_temp AS 'SELECT 1'",
        )
        .unwrap();
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
        serialize_template_changes();
        Spi::run("CREATE TABLE tenant_template.items (id int PRIMARY KEY)").unwrap();
        let id = created("d1d1d1d1-0000-4000-8000-000000000007", "lagging");
        Spi::run("SELECT * FROM tenant.register_migration(1, 'ALTER TABLE items ADD COLUMN label text', 'label')")
            .unwrap();
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
        assert_eq!(
            one::<bool>("SELECT has_schema_privilege('roleless_owner', 'roleless', 'USAGE, CREATE')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT has_table_privilege('roleless_owner', 'roleless.students', 'INSERT')"),
            Some(true)
        );
        // No application role is a member of a tenant role (set_context switches without it).
        assert_eq!(one::<bool>("SELECT pg_has_role('tenant_control_app', 'roleless_owner', 'MEMBER')"), Some(false));
        assert_eq!(tenant_check(&id, false), Vec::<Found>::new());
    }

    /// Operators and functions a tenant could plant in its schema to be picked
    /// by the extension's catalog queries: each records that it ran (in
    /// `public.trap_marks`) and otherwise behaves like the built-in it shadows.
    /// `{s}` is the tenant's schema.
    pub(crate) const TRAPS: &str = r#"
CREATE TABLE public.trap_marks (who text, what text);
CREATE FUNCTION {s}.mark(what text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO public.trap_marks VALUES (current_user, what);
    RETURN true;
END $$;
DO $do$ DECLARE t text; BEGIN
    FOREACH t IN ARRAY ARRAY['regclass', 'regnamespace', 'regrole', 'regprocedure', 'regtype'] LOOP
        EXECUTE pg_catalog.format('CREATE FUNCTION {s}.eq_oid_%1$s(oid, %1$s) RETURNS boolean LANGUAGE plpgsql AS
            $f$ BEGIN RETURN {s}.mark(%2$L) AND $1 OPERATOR(pg_catalog.=) $2::oid; END $f$', t, '= (oid, ' || t || ')');
        EXECUTE pg_catalog.format('CREATE OPERATOR {s}.= (LEFTARG = oid, RIGHTARG = %1$s, FUNCTION = {s}.eq_oid_%1$s)', t);
    END LOOP;
END $do$;
CREATE FUNCTION {s}.ne_oid_regclass(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('<> (oid, regclass)') AND $1 OPERATOR(pg_catalog.<>) $2::oid; END $$;
CREATE FUNCTION {s}.ne_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('<> (oid, integer)') AND $1 OPERATOR(pg_catalog.<>) $2::oid; END $$;
CREATE FUNCTION {s}.eq_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (oid, integer)') AND $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE FUNCTION {s}.eq_name_text(name, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (name, text)') AND $1::text OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION {s}.eq_text_name(text, name) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (text, name)') AND $1 OPERATOR(pg_catalog.=) $2::text; END $$;
CREATE FUNCTION {s}.ne_name_text(name, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('<> (name, text)') AND $1::text OPERATOR(pg_catalog.<>) $2; END $$;
CREATE FUNCTION {s}.cat_text_name(text, name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('|| (text, name)'); RETURN $1 OPERATOR(pg_catalog.||) $2::text; END $$;
CREATE FUNCTION {s}.cat_name_text(name, text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('|| (name, text)'); RETURN $1::text OPERATOR(pg_catalog.||) $2; END $$;
CREATE FUNCTION {s}.like_name_text(name, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('~~ (name, text)') AND $1::text OPERATOR(pg_catalog.~~) $2; END $$;
CREATE FUNCTION {s}.path_text(jsonb, text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('#>> (jsonb, text)'); RETURN $1 OPERATOR(pg_catalog.#>>) ARRAY[$2]; END $$;
CREATE OPERATOR {s}.<> (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = {s}.ne_oid_regclass);
CREATE OPERATOR {s}.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = {s}.eq_oid_int);
CREATE OPERATOR {s}.<> (LEFTARG = oid, RIGHTARG = integer, FUNCTION = {s}.ne_oid_int);
CREATE OPERATOR {s}.= (LEFTARG = name, RIGHTARG = text, FUNCTION = {s}.eq_name_text);
CREATE OPERATOR {s}.= (LEFTARG = text, RIGHTARG = name, FUNCTION = {s}.eq_text_name);
CREATE OPERATOR {s}.<> (LEFTARG = name, RIGHTARG = text, FUNCTION = {s}.ne_name_text);
CREATE OPERATOR {s}.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = {s}.cat_text_name);
CREATE OPERATOR {s}.|| (LEFTARG = name, RIGHTARG = text, FUNCTION = {s}.cat_name_text);
CREATE OPERATOR {s}.~~ (LEFTARG = name, RIGHTARG = text, FUNCTION = {s}.like_name_text);
CREATE OPERATOR {s}.#>> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = {s}.path_text);
CREATE FUNCTION {s}.lower(name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('lower(name)'); RETURN pg_catalog.lower($1::text); END $$;
CREATE FUNCTION {s}.lower(character varying) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('lower(varchar)'); RETURN pg_catalog.lower($1::text); END $$;
CREATE FUNCTION {s}.format(text, text, name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('format(text, text, name)'); RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION {s}.format(text, name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('format(text, name)'); RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION {s}.starts_with(name, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('starts_with(name, text)') AND pg_catalog.starts_with($1::text, $2); END $$;
CREATE FUNCTION {s}.strpos(name, text) RETURNS integer LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('strpos(name, text)'); RETURN pg_catalog.strpos($1::text, $2); END $$;
CREATE FUNCTION {s}.quote_ident(name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('quote_ident(name)'); RETURN pg_catalog.quote_ident($1::text); END $$;
CREATE FUNCTION {s}.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION {s}.jsonb_build_array(text) RETURNS jsonb LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('jsonb_build_array(text)'); RETURN pg_catalog.jsonb_build_array($1); END $$;
CREATE FUNCTION {s}.to_jsonb(text) RETURNS jsonb LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('to_jsonb(text)'); RETURN pg_catalog.to_jsonb($1); END $$;
CREATE FUNCTION {s}.array_to_string(text[], text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('array_to_string(text[], text)'); RETURN pg_catalog.array_to_string($1, $2); END $$;
"#;

    pub(crate) fn plant_traps(schema: &str) {
        Spi::run(&TRAPS.replace("{s}", schema)).unwrap();
        // The traps work: with the schema on the search_path, a query like the
        // extension's catalog queries picks them.
        Spi::run(&format!("SET LOCAL search_path = {schema}; SELECT count(*) FROM pg_catalog.pg_class c WHERE c.oid = 'pg_catalog.pg_class'::regclass; RESET search_path")).unwrap();
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT what, ', ') FROM public.trap_marks"),
            Some("= (oid, regclass)".into())
        );
        Spi::run("DELETE FROM public.trap_marks").unwrap();
    }

    pub(crate) fn trap_marks() -> Vec<String> {
        Spi::connect(|c| {
            c.select("SELECT who || ': ' || what FROM public.trap_marks ORDER BY 1", None, &[])
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect()
        })
    }

    #[pg_test]
    fn catalog_reads_never_pick_a_tenants_operators_or_functions() {
        fill_template();
        let id = created("d1d1d1d1-0000-4000-8000-000000000009", "trapped");
        plant_traps("trapped");
        // The integrity check (with and without fix, one tenant and the fleet).
        let findings = tenant_check(&id, false);
        tenant_check(&id, true);
        check("fix => false");
        // The generators a backup runs against a tenant's schema, and the drift reader.
        crate::copy::template::generate("trapped", "trapped_owner").unwrap();
        crate::copy::template::generate_for_load("trapped", "trapped_owner").unwrap();
        crate::copy::template::unsupported_in("trapped").unwrap();
        crate::copy::structure::read("trapped", "trapped_owner").unwrap();
        // Health, statistics, usage, optimize, and a copy of the template.
        Spi::run(&format!("SELECT * FROM tenant.institution_health('{id}')")).unwrap();
        Spi::run(&format!("SELECT * FROM tenant.health_checks('{id}')")).unwrap();
        Spi::run(
            "SELECT * FROM tenant.fleet_health; SELECT * FROM tenant.table_stats; SELECT * FROM tenant.tenant_stats",
        )
        .unwrap();
        Spi::run("SELECT tenant.record_usage_snapshot()").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.optimize_institution_schema('{id}')")).unwrap();
        created("d1d1d1d1-0000-4000-8000-00000000000a", "after_traps");
        assert_eq!(trap_marks(), Vec::<String>::new());
        // The planted objects are reported, each by its kind.
        for object in
            ["operator =(oid, regclass)", "operator ||(text, name)", "function lower(name)", "function mark(what text)"]
        {
            assert_eq!(found(&findings, "extra_object", object).1, "WARNING", "{findings:#?}");
        }
    }

    #[pg_test]
    fn every_kind_of_object_a_tenant_adds_is_reported() {
        fill_template();
        let id = created("d1d1d1d1-0000-4000-8000-00000000000b", "busy");
        Spi::run(
            "SET LOCAL search_path = busy;
         CREATE TABLE own_table (id int PRIMARY KEY, v text);
         CREATE INDEX own_index ON students (email);
         CREATE SEQUENCE own_seq;
         CREATE VIEW own_view AS SELECT 1 AS one;
         CREATE MATERIALIZED VIEW own_matview AS SELECT 1 AS one;
         CREATE TYPE own_enum AS ENUM ('a');
         CREATE DOMAIN own_domain AS int CHECK (VALUE > 0);
         CREATE TYPE own_range AS RANGE (subtype = int4);
         CREATE FUNCTION own_fn(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
         CREATE AGGREGATE own_sum(int) (SFUNC = int4pl, STYPE = int);
         CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq);
         CREATE CAST (own_domain AS own_enum) WITH INOUT;
         CREATE FUNCTION own_trigger() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER own_trigger BEFORE INSERT ON own_table FOR EACH ROW EXECUTE FUNCTION own_trigger();
         -- A tc_ trigger made before 0.2.0 reserved the prefix: reported all the same.
         ALTER EVENT TRIGGER tenant_control_ddl DISABLE;
         CREATE TRIGGER tc_sneaky BEFORE INSERT ON courses FOR EACH ROW EXECUTE FUNCTION own_trigger();
         ALTER EVENT TRIGGER tenant_control_ddl ENABLE;
         CREATE RULE own_rule AS ON UPDATE TO own_table DO ALSO NOTIFY own;
         CREATE POLICY own_policy ON own_table USING (true);
         CREATE STATISTICS own_stats ON id, v FROM own_table;
         CREATE COLLATION own_collation FROM \"C\";
         CREATE TEXT SEARCH CONFIGURATION own_tsconfig (COPY = pg_catalog.simple);
         CREATE TEXT SEARCH DICTIONARY own_dict (TEMPLATE = pg_catalog.simple);
         CREATE OPERATOR FAMILY own_family USING btree;
         RESET search_path",
        )
        .unwrap();
        let findings = tenant_check(&id, false);
        for object in [
            "table own_table",
            "index students.own_index",
            "sequence own_seq",
            "view own_view",
            "materialized view own_matview",
            "type own_enum",
            "type own_domain",
            "type own_range",
            "function own_fn(integer)",
            "aggregate own_sum(integer)",
            "operator ===(integer, integer)",
            "cast (own_domain AS own_enum)",
            "trigger own_table.own_trigger",
            "trigger courses.tc_sneaky",
            "rule own_table.own_rule",
            "policy own_table.own_policy",
            "statistics object own_stats",
            "collation own_collation",
            "text search configuration own_tsconfig",
            "text search dictionary own_dict",
            "operator family own_family USING btree",
        ] {
            assert_eq!(found(&findings, "extra_object", object).1, "WARNING", "{findings:#?}");
        }
        // A fix drops none of them (they may hold the tenant's data or be its code).
        let fixed = tenant_check(&id, true);
        assert!(fixed.iter().filter(|f| f.0 == "extra_object").all(|f| !f.3), "{fixed:#?}");
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'busy'::regnamespace AND relname LIKE 'own_%'"
            ),
            Some(6)
        );
    }

    #[pg_test]
    fn a_tenant_function_that_maintenance_would_run_as_the_superuser_is_reported() {
        // A table of the installing superuser with an index on a function that
        // tenant_template_owner owns: every tenant owns (and may replace) its copy
        // of the function, and ANALYZE runs index expressions as the table's owner.
        Spi::run(
        "CREATE TABLE tenant_template.words (w text);
         CREATE FUNCTION tenant_template.norm(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT pg_catalog.lower($1)';
         ALTER FUNCTION tenant_template.norm(text) OWNER TO tenant_template_owner;
         CREATE INDEX words_norm ON tenant_template.words (tenant_template.norm(w));",
    )
    .unwrap();
        let id = created("d1d1d1d1-0000-4000-8000-00000000000c", "hazard");
        let findings = tenant_check(&id, false);
        let finding = findings
            .iter()
            .find(|f| f.0 == "tenant_code_run_as_owner" && f.2.contains("words_norm"))
            .unwrap_or_else(|| panic!("not reported: {findings:#?}"));
        assert_eq!(finding.1, "ERROR");
        assert!(
            finding.4.contains("function hazard.norm(text)") && finding.4.contains("hazard_owner"),
            "{}",
            finding.4
        );
    }

    /// The fleet check releases the backend's catalog caches every hundred
    /// tenants: drift in a tenant checked after a release (the last of 102),
    /// and a repair there, work as in the first batch.
    #[pg_test]
    fn drift_in_the_last_batch_of_a_large_fleet_is_found_and_fixed() {
        fill_template();
        let first = created("d1d1d1d1-0000-4000-8000-00000000b000", "batch_000");
        for n in 1..101 {
            created(&format!("d1d1d1d1-0000-4000-8000-00000000b{n:03}"), &format!("batch_{n:03}"));
        }
        let last = created("d1d1d1d1-0000-4000-8000-00000000b101", "batch_101");
        Spi::run(
            "DROP INDEX batch_000.students_lower_name;
             DROP INDEX batch_101.students_lower_name;
             ALTER TABLE batch_101.students ADD COLUMN nickname text;",
        )
        .unwrap();
        let fleet = Spi::connect_mut(|c| {
            c.update(
                "SELECT schema_name, check_name, object, fixed FROM tenant.check_integrity(NULL, fix => true)
                  WHERE schema_name LIKE 'batch\\_%' ORDER BY 1, 2, 3",
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
                )
            })
            .collect::<Vec<_>>()
        });
        assert_eq!(
            fleet,
            vec![
                ("batch_000".into(), "missing_object".into(), "index students.students_lower_name".into(), true),
                ("batch_101".into(), "extra_object".into(), "column students.nickname".into(), false),
                ("batch_101".into(), "missing_object".into(), "index students.students_lower_name".into(), true),
            ]
        );
        // Repaired on both sides of the cache releases: each tenant checks clean but for the extra column.
        assert_eq!(tenant_check(&first, false), Vec::<Found>::new());
        let after: Vec<String> = tenant_check(&last, false).into_iter().map(|f| f.0).collect();
        assert_eq!(after, vec!["extra_object".to_string()]);
    }
}
