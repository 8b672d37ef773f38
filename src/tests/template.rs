//! Template copies (included into the `tests` module after tests.rs).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// A template with every object kind the copy supports.
    pub(crate) const RICH_TEMPLATE: &str = r#"
CREATE TABLE public.institutions_ext (id uuid PRIMARY KEY);
SET LOCAL search_path = tenant_template;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer NOT NULL CHECK (VALUE > 0);
CREATE TYPE address AS (street text, zip text);
CREATE SEQUENCE invoice_no START 1000 INCREMENT 10;
CREATE TABLE tenant_template_settings (key text PRIMARY KEY, value jsonb NOT NULL DEFAULT '{}');
CREATE TABLE students (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100) PRIMARY KEY,
    name text NOT NULL CHECK (length(name) > 0),
    mood mood DEFAULT 'ok',
    age posint,
    home address,
    email text UNIQUE,
    institution uuid REFERENCES public.institutions_ext (id),
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
    tenant_template_col int DEFAULT 1
);
CREATE TABLE courses (id serial PRIMARY KEY, code text NOT NULL, invoice int DEFAULT nextval('invoice_no'), tags text[]);
CREATE TABLE enrolments (
    student_id bigint REFERENCES students (id) ON DELETE CASCADE,
    course_id int,
    PRIMARY KEY (student_id, course_id)
);
ALTER TABLE enrolments ADD FOREIGN KEY (course_id) REFERENCES courses (id) NOT VALID;
CREATE INDEX students_lower_name ON students (lower(name)) WHERE email IS NOT NULL;
CREATE INDEX courses_tags ON courses USING gin (tags);
CREATE VIEW student_courses AS
    SELECT s.name, c.code FROM students s JOIN enrolments e ON e.student_id = s.id JOIN courses c ON c.id = e.course_id;
CREATE MATERIALIZED VIEW course_counts AS SELECT course_id, count(*) AS n FROM enrolments GROUP BY course_id;
CREATE UNIQUE INDEX course_counts_id ON course_counts (course_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql SET search_path = tenant_template, pg_temp
    AS $$ BEGIN NEW.code := upper(NEW.code); RETURN NEW; END $$;
CREATE TRIGGER courses_upper BEFORE INSERT ON courses FOR EACH ROW EXECUTE FUNCTION touch();
CREATE FUNCTION student_count() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT count(*) FROM students; END;
CREATE PROCEDURE add_course(p text) LANGUAGE sql AS $$ INSERT INTO courses (code) VALUES (p) $$;
CREATE FUNCTION describe(s students) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT s.name || ' (' || s.age || ')' $$;
CREATE FUNCTION oldest() RETURNS int LANGUAGE sql STABLE SECURITY DEFINER SET search_path = tenant_template, pg_temp
    BEGIN ATOMIC SELECT max(age) FROM students; END;
ALTER TABLE students ENABLE ROW LEVEL SECURITY;
ALTER TABLE students FORCE ROW LEVEL SECURITY;
CREATE POLICY adults ON students FOR SELECT USING (age >= 18);
CREATE POLICY writers ON students FOR INSERT TO tenant_template_owner WITH CHECK (true);
GRANT EXECUTE ON FUNCTION student_count() TO tenant_template_owner;
REVOKE ALL ON FUNCTION student_count() FROM PUBLIC;
COMMENT ON TABLE students IS 'People who study';
COMMENT ON COLUMN students.name IS 'Full name';
COMMENT ON FUNCTION touch() IS 'Upper-cases course codes';
RESET search_path;
"#;

    pub(crate) fn fill_template() {
        Spi::run(RICH_TEMPLATE).unwrap();
    }

    /// Everything the generators see in a schema, with the schema's own name and
    /// role factored out, so a template and its copy can be compared line by line.
    pub(crate) fn structure_of(schema: &str, role: &str) -> Vec<String> {
        let mut lines: Vec<String> = crate::copy::template::generate(schema, role)
            .unwrap()
            .into_iter()
            .map(|(kind, statement)| {
                format!("{kind}: {}", crate::copy::template::render(&statement, "same_schema", "same_role"))
            })
            .collect();
        // Creation order (and so oid order) differs between a template and its copy.
        lines.sort();
        lines
    }

    #[pg_test]
    fn a_copy_matches_the_template_object_by_object() {
        fill_template();
        let (status, message, _, _) = create("c0c0c0c0-0000-4000-8000-000000000001", Some("copy_a"));
        assert_eq!(status, "SUCCESS", "{message}");
        let template = structure_of("tenant_template", "tenant_template_owner");
        let copy = structure_of("copy_a", "copy_a_owner");
        assert!(template.len() > 30, "the rich template must be seen whole: {template:#?}");
        let only_template: Vec<_> = template.iter().filter(|line| !copy.contains(line)).collect();
        let only_copy: Vec<_> = copy.iter().filter(|line| !template.contains(line)).collect();
        assert!(
            only_template.is_empty() && only_copy.is_empty(),
            "template only: {only_template:#?}\ncopy only: {only_copy:#?}"
        );
        assert_eq!(copy.len(), template.len());
    }

    #[pg_test]
    fn a_copy_works_on_its_own() {
        fill_template();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000002", Some("copy_b")).0, "SUCCESS");
        assert_eq!(one::<i32>("SELECT table_count FROM tenant.tenant_schemas WHERE schema_name = 'copy_b'"), Some(4));
        // Identity and sequences start where the template's options say, on the copy's own counters.
        assert_eq!(one::<i64>("INSERT INTO copy_b.students (name, age) VALUES ('Ann', 20) RETURNING id"), Some(100));
        assert_eq!(
            one::<i64>("INSERT INTO tenant_template.students (name, age) VALUES ('T', 30) RETURNING id"),
            Some(100)
        );
        assert_eq!(
            one::<String>("INSERT INTO copy_b.courses (code) VALUES ('math') RETURNING code"),
            Some("MATH".into())
        );
        assert_eq!(one::<i32>("SELECT invoice FROM copy_b.courses"), Some(1000));
        assert_eq!(one::<bool>("SELECT is_called FROM tenant_template.invoice_no"), Some(false));
        assert_eq!(
            one::<String>("SELECT pg_get_serial_sequence('copy_b.courses', 'id')"),
            Some("copy_b.courses_id_seq".into())
        );
        // Like in the template, an unqualified name in a body binds through the caller's search_path.
        Spi::run("SET LOCAL search_path = copy_b; CALL add_course('art'); RESET search_path").unwrap();
        Spi::run("INSERT INTO copy_b.enrolments VALUES (100, 1), (100, 2)").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM copy_b.student_courses"), Some(2));
        assert_eq!(one::<i64>("SELECT copy_b.student_count()"), Some(1));
        assert_eq!(one::<String>("SELECT name_upper FROM copy_b.students"), Some("ANN".into()));
        assert_eq!(one::<String>("SELECT copy_b.describe(s) FROM copy_b.students s"), Some("Ann (20)".into()));
        assert_eq!(
        one::<String>("SELECT format('%s/%s', prosecdef, array_to_string(proconfig, ';')) FROM pg_proc WHERE oid = 'copy_b.oldest'::regproc"),
        Some("t/search_path=copy_b, pg_temp".into())
    );
        // Function settings, RLS, policies, grants, ownership, comments and outside references.
        assert_eq!(
            one::<String>("SELECT array_to_string(proconfig, ';') FROM pg_proc WHERE oid = 'copy_b.touch'::regproc"),
            Some("search_path=copy_b, pg_temp".into())
        );
        assert_eq!(
        one::<String>("SELECT format('%s/%s', relrowsecurity, relforcerowsecurity) FROM pg_class WHERE oid = 'copy_b.students'::regclass"),
        Some("t/t".into())
    );
        assert_eq!(
        one::<String>("SELECT array_to_string(polroles::regrole[], ',') FROM pg_policy WHERE polname = 'writers' AND polrelid = 'copy_b.students'::regclass"),
        Some("copy_b_owner".into())
    );
        assert_eq!(one::<bool>("SELECT has_table_privilege('copy_b_owner', 'copy_b.students', 'INSERT')"), Some(true));
        assert_eq!(
            one::<bool>("SELECT has_function_privilege('copy_b_owner', 'copy_b.student_count()', 'EXECUTE')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT has_function_privilege('public', 'copy_b.student_count()', 'EXECUTE')"),
            Some(false)
        );
        assert_eq!(
            one::<String>("SELECT obj_description('copy_b.students'::regclass, 'pg_class')"),
            Some("People who study".into())
        );
        assert_eq!(
        one::<String>("SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = 'copy_b.students'::regclass AND contype = 'f'"),
        Some("institutions_ext".into())
    );
        assert_eq!(one::<i64>("SELECT count(*) FROM copy_b.tenant_template_settings"), Some(0));
        assert_eq!(
        one::<bool>("SELECT convalidated FROM pg_constraint WHERE conname = 'enrolments_course_id_fkey' AND connamespace = 'copy_b'::regnamespace"),
        Some(false)
    );
    }

    #[pg_test]
    fn row_level_security_holds_in_the_copy() {
        fill_template();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000003", Some("copy_c")).0, "SUCCESS");
        Spi::run("INSERT INTO copy_c.students (name, age) VALUES ('Kid', 9), ('Adult', 40)").unwrap();
        Spi::run("SET LOCAL ROLE copy_c_owner").unwrap();
        let visible = one::<String>("SELECT string_agg(name, ',') FROM copy_c.students");
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(visible, Some("Adult".into()));
    }

    #[pg_test]
    fn a_copy_survives_the_template_and_its_siblings() {
        fill_template();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000004", Some("copy_d")).0, "SUCCESS");
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000005", Some("copy_e")).0, "SUCCESS");
        assert_eq!(
        one::<i64>(
            "SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
              WHERE c.relnamespace = 'copy_d'::regnamespace
                AND d.refobjid IN (SELECT oid FROM pg_class WHERE relnamespace = 'tenant_template'::regnamespace)"
        ),
        Some(0)
    );
        Spi::run("ALTER EXTENSION tenant_control DROP SCHEMA tenant_template").unwrap();
        Spi::run("DROP SCHEMA tenant_template CASCADE").unwrap();
        Spi::run("DROP SCHEMA copy_e CASCADE").unwrap();
        Spi::run("INSERT INTO copy_d.students (name, age) VALUES ('Still', 30)").unwrap();
        assert_eq!(one::<i64>("SELECT copy_d.student_count()"), Some(1));
        assert_eq!(one::<String>("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'copy_d.courses'::regclass AND adnum = 3"),
        Some("nextval('copy_d.invoice_no'::regclass)".into()));
    }

    #[pg_test]
    fn an_uncopyable_template_is_refused_before_anything_is_created() {
        Spi::run("CREATE TABLE tenant_template.ok (x int)").unwrap();
        Spi::run("CREATE OPERATOR tenant_template.=== (leftarg = int, rightarg = int, function = int4eq)").unwrap();
        let (status, message, _, sqlstate) = create("c0c0c0c0-0000-4000-8000-000000000006", Some("copy_f"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("0A000")));
        assert!(
            message.contains("operator tenant_template.===") || message.contains("operator tenant_template.\"===\""),
            "{message}"
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname = 'copy_f'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_roles WHERE rolname = 'copy_f_owner'"), Some(0));
    }

    #[pg_test]
    fn a_function_naming_the_template_in_its_body_is_refused() {
        Spi::run(
            "CREATE FUNCTION tenant_template.leaky() RETURNS bigint LANGUAGE plpgsql
           AS 'BEGIN RETURN (SELECT count(*) FROM tenant_template.students); END'",
        )
        .unwrap();
        let (status, message, _, sqlstate) = create("c0c0c0c0-0000-4000-8000-000000000007", Some("copy_g"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("0A000")), "{message}");
        assert!(message.contains("leaky"), "{message}");
    }

    #[pg_test]
    fn copies_follow_every_change_of_the_template() {
        Spi::run("CREATE TABLE tenant_template.a (x int)").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000010", Some("follow_1")).0, "SUCCESS");
        // The DDL generated for follow_1 is reused while the template stays as it is...
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000011", Some("follow_2")).0, "SUCCESS");
        assert_eq!(
        one::<bool>("SELECT (metadata->'template'->>'generated')::boolean FROM tenant.schema_operations WHERE metadata->>'schema_name' = 'follow_2'"),
        Some(false)
    );
        // ...and regenerated after any change: new column, grant, comment, dropped table.
        Spi::run("ALTER TABLE tenant_template.a ADD COLUMN y text").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000012", Some("follow_3")).0, "SUCCESS");
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'follow_3' AND column_name = 'y'"
            ),
            Some(1)
        );
        Spi::run("GRANT SELECT ON tenant_template.a TO PUBLIC").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000013", Some("follow_4")).0, "SUCCESS");
        assert_eq!(one::<bool>("SELECT has_table_privilege('public', 'follow_4.a', 'SELECT')"), Some(true));
        Spi::run("COMMENT ON TABLE tenant_template.a IS 'letters'").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000014", Some("follow_5")).0, "SUCCESS");
        assert_eq!(one::<String>("SELECT obj_description('follow_5.a'::regclass, 'pg_class')"), Some("letters".into()));
        Spi::run("DROP TABLE tenant_template.a").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000015", Some("follow_6")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'follow_6'"), Some(0));
        // The extension's own DDL on tenants does not count as a change of the template.
        let changes = one::<i64>("SELECT count(*) FROM tenant.template_changes").unwrap();
        assert_eq!(create("c0c0c0c0-0000-4000-8000-000000000016", Some("follow_7")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.template_changes"), Some(changes));
    }

    /// GRANT and REVOKE count as template changes when they name an object
    /// of the template (a relation, a column, a function, a type; by name or
    /// through ALL ... IN SCHEMA), and only then: a GRANT elsewhere in the
    /// database does not look at the template's privileges at all.
    #[pg_test]
    fn grants_count_as_template_changes_only_on_the_template() {
        serialize_template_changes();
        Spi::run(
            "CREATE TABLE public.elsewhere (x int);
             CREATE TABLE tenant_template.g (x int);
             CREATE FUNCTION tenant_template.gf() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE TYPE tenant_template.gt AS ENUM ('a');",
        )
        .unwrap();
        let changes = || one::<i64>("SELECT count(*) FROM tenant.template_changes").unwrap();
        let before = changes();
        for elsewhere in [
            "GRANT SELECT ON public.elsewhere TO PUBLIC",
            "REVOKE SELECT ON public.elsewhere FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO PUBLIC",
            "GRANT EXECUTE ON FUNCTION pg_catalog.now() TO PUBLIC",
        ] {
            Spi::run(elsewhere).unwrap();
            assert_eq!(changes(), before, "{elsewhere}");
        }
        for (n, on_template) in [
            "GRANT SELECT ON tenant_template.g TO PUBLIC",
            "GRANT UPDATE (x) ON tenant_template.g TO PUBLIC",
            "REVOKE ALL ON FUNCTION tenant_template.gf() FROM PUBLIC",
            "REVOKE USAGE ON TYPE tenant_template.gt FROM PUBLIC",
            "GRANT SELECT ON ALL TABLES IN SCHEMA tenant_template TO PUBLIC",
        ]
        .into_iter()
        .enumerate()
        {
            Spi::run(on_template).unwrap();
            assert_eq!(changes(), before + 1 + n as i64, "{on_template}");
        }
        // Names without a schema: they count when the template is on the
        // search_path they resolve with, whatever comes first on it.
        let before = changes();
        Spi::run("SET LOCAL search_path = public").unwrap();
        for elsewhere in ["GRANT SELECT ON elsewhere TO PUBLIC", "GRANT EXECUTE ON FUNCTION now() TO PUBLIC"] {
            Spi::run(elsewhere).unwrap();
            assert_eq!(changes(), before, "{elsewhere}");
        }
        Spi::run("SET LOCAL search_path = public, tenant_template").unwrap();
        for (n, on_template) in [
            "GRANT SELECT ON g TO PUBLIC",
            "GRANT SELECT ON public.elsewhere, g TO PUBLIC",
            "REVOKE ALL ON FUNCTION gf() FROM PUBLIC",
            "GRANT USAGE ON TYPE gt TO PUBLIC",
        ]
        .into_iter()
        .enumerate()
        {
            Spi::run(on_template).unwrap();
            assert_eq!(changes(), before + 1 + n as i64, "{on_template}");
        }
        Spi::run("RESET search_path").unwrap();
    }

    /// A create runs its statements without the event-trigger round when
    /// the extension's own triggers are the only ones (core/ddl_script.rs);
    /// an event trigger of anyone else still sees each of them, as before.
    #[pg_test]
    fn other_event_triggers_see_every_statement_of_a_create() {
        fill_template();
        Spi::run(
            "CREATE TEMP TABLE seen_ddl (tag text, identity text);
             CREATE FUNCTION public.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS
               'BEGIN INSERT INTO seen_ddl SELECT command_tag, object_identity FROM pg_event_trigger_ddl_commands(); END';
             CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION public.note_ddl();",
        )
        .unwrap();
        assert_eq!(create("e7e7e7e7-0000-4000-8000-000000000001", Some("watched")).0, "SUCCESS");
        let seen = |tag: &str| {
            one::<i64>(&format!("SELECT count(*) FROM seen_ddl WHERE tag = '{tag}' AND (identity = 'watched' OR identity LIKE '%watched.%')"))
                .unwrap()
        };
        let tables = one::<i64>("SELECT count(*) FROM pg_tables WHERE schemaname = 'watched'").unwrap();
        assert!(tables > 0, "the rich template has tables");
        assert_eq!(seen("CREATE SCHEMA"), 1);
        assert_eq!(seen("CREATE TABLE"), tables);
        assert!(seen("CREATE INDEX") >= 2 && seen("CREATE FUNCTION") >= 4 && seen("CREATE POLICY") == 2);

        // Disabled, it watches nothing: the copy's statements are then run as
        // sub-commands, and the copy is the same.
        Spi::run("ALTER EVENT TRIGGER note_ddl DISABLE; DELETE FROM seen_ddl").unwrap();
        assert_eq!(create("e7e7e7e7-0000-4000-8000-000000000002", Some("unwatched")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM seen_ddl"), Some(0));
        assert_eq!(structure_of("watched", "watched_owner"), structure_of("unwatched", "unwatched_owner"));
    }

    /// A trigger's definition worked out once in a transaction and reused
    /// for another schema's trigger of the same shape (copy/trigger_text.rs)
    /// is what pg_get_triggerdef gives there, drift included.
    #[pg_test]
    fn trigger_definitions_reused_across_schemas_are_postgres_own() {
        Spi::run(
            r#"CREATE SCHEMA tt_a; CREATE SCHEMA tt_b;
               CREATE FUNCTION public.tt_shared() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
               CREATE FUNCTION tt_a.f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
               CREATE FUNCTION tt_b.f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
               CREATE TABLE tt_a.t (a int, b text, "c d" int);
               CREATE TABLE tt_b.t ("c d" int, b text, a int);
               CREATE TRIGGER upd BEFORE UPDATE OF b, "c d" ON tt_a.t FOR EACH ROW EXECUTE FUNCTION tt_a.f('x', 'it''s');
               CREATE TRIGGER upd BEFORE UPDATE OF b, "c d" ON tt_b.t FOR EACH ROW EXECUTE FUNCTION tt_b.f('x', 'it''s');
               CREATE TRIGGER ins AFTER INSERT ON tt_a.t REFERENCING NEW TABLE AS fresh
                   FOR EACH STATEMENT EXECUTE FUNCTION public.tt_shared();
               CREATE TRIGGER ins AFTER INSERT ON tt_b.t REFERENCING NEW TABLE AS fresh
                   FOR EACH STATEMENT EXECUTE FUNCTION public.tt_shared();
               CREATE TRIGGER del BEFORE DELETE ON tt_a.t FOR EACH ROW EXECUTE FUNCTION tt_a.f();
               CREATE TRIGGER del BEFORE DELETE ON tt_b.t FOR EACH ROW EXECUTE FUNCTION tt_a.f();
               CREATE TRIGGER cond BEFORE INSERT ON tt_a.t FOR EACH ROW WHEN (NEW.a > 0) EXECUTE FUNCTION tt_a.f();
               CREATE TRIGGER cond BEFORE INSERT ON tt_b.t FOR EACH ROW WHEN (NEW.a > 1) EXECUTE FUNCTION tt_b.f();
               CREATE TRIGGER "upd ON tt_a.t" AFTER UPDATE ON tt_a.t FOR EACH ROW EXECUTE FUNCTION tt_a.f();
               CREATE TRIGGER "upd ON tt_a.t" AFTER UPDATE ON tt_b.t FOR EACH ROW EXECUTE FUNCTION tt_b.f();"#,
        )
        .unwrap();
        let definition = |schema: &str, trigger: &str, how: &str| {
            one::<String>(&format!(
                "SELECT {how} FROM pg_trigger WHERE tgrelid = '{schema}.t'::regclass AND tgname = '{trigger}'"
            ))
            .unwrap()
        };
        for schema in ["tt_a", "tt_b"] {
            for trigger in ["upd", "ins", "del", "cond", "upd ON tt_a.t"] {
                let ours = definition(schema, trigger, &format!("tenant.deparse_in('{schema}', 'trigger', oid)"));
                Spi::run(&format!("SET LOCAL search_path = {schema}")).unwrap();
                let postgres = definition(schema, trigger, "pg_catalog.pg_get_triggerdef(oid)");
                Spi::run("RESET search_path").unwrap();
                assert_eq!(ours, postgres, "{schema}.{trigger}");
            }
        }
        assert!(definition("tt_b", "del", "tenant.deparse_in('tt_b', 'trigger', oid)").ends_with("tt_a.f()"));
        assert!(definition("tt_b", "upd", "tenant.deparse_in('tt_b', 'trigger', oid)").contains(" ON tt_b.t "));
    }
}
