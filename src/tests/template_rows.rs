//! Reference rows of the template (tenant.set_template_rows).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    const HISTORY: &str = "
        CREATE TABLE tenant_template.django_migrations (id bigserial PRIMARY KEY, app text NOT NULL, name text NOT NULL);
        INSERT INTO tenant_template.django_migrations (app, name)
            VALUES ('auth', '0001_initial'), ('auth', '0002_alter'), ('shop', '0001_initial');
        -- Who inserts a row, as the tenant's own trigger sees it.
        CREATE TABLE tenant_template.kinds (code text PRIMARY KEY, loaded_by text);
        CREATE FUNCTION tenant_template.note_loader() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN NEW.loaded_by := current_user; RETURN NEW; END $$;
        INSERT INTO tenant_template.kinds VALUES ('a', NULL), ('b', NULL);
        CREATE TRIGGER note_loader BEFORE INSERT ON tenant_template.kinds FOR EACH ROW EXECUTE FUNCTION tenant_template.note_loader();
        CREATE TABLE tenant_template.orders (id int PRIMARY KEY);
        INSERT INTO tenant_template.orders VALUES (1);";

    fn rows(sql: &str) -> Vec<String> {
        Spi::connect(|c| c.select(sql, None, &[]).unwrap().map(|r| r.get::<String>(1).unwrap().unwrap()).collect())
    }

    #[pg_test]
    fn marked_tables_give_their_rows_to_every_new_tenant_as_its_role() {
        serialize_template_changes();
        Spi::run(HISTORY).unwrap();
        Spi::run(
            "SELECT tenant.set_template_rows('django_migrations'); SELECT tenant.set_template_rows('kinds', true)",
        )
        .unwrap();
        assert_eq!(
            rows("SELECT table_name FROM tenant.template_row_tables ORDER BY 1"),
            vec!["django_migrations".to_string(), "kinds".to_string()]
        );
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000001", Some("rows_a")).0, "SUCCESS");
        assert_eq!(
            rows("SELECT format('%s %s.%s', id, app, name) FROM rows_a.django_migrations ORDER BY id"),
            vec!["1 auth.0001_initial", "2 auth.0002_alter", "3 shop.0001_initial"]
        );
        // The serial goes on from the template's.
        assert_eq!(
            one::<i64>("INSERT INTO rows_a.django_migrations (app, name) VALUES ('shop', '0002') RETURNING id"),
            Some(4)
        );
        // Loaded as the tenant's role: its trigger saw that role.
        assert_eq!(
            rows("SELECT format('%s %s', code, loaded_by) FROM rows_a.kinds ORDER BY 1"),
            vec!["a rows_a_owner", "b rows_a_owner"]
        );
        // Unmarked tables stay empty.
        assert_eq!(one::<i64>("SELECT count(*) FROM rows_a.orders"), Some(0));
        assert_eq!(
            one::<i64>(
                "SELECT (metadata->>'template_rows')::bigint FROM tenant.schema_operations
                         WHERE operation_type = 'CREATE' AND metadata->>'schema_name' = 'rows_a'"
            ),
            Some(5)
        );

        // A migration's changes to the rows reach existing tenants and the template alike.
        let script = "INSERT INTO django_migrations (app, name) VALUES ('shop', '0002_price'); DELETE FROM kinds WHERE code = 'b'";
        let registered =
            format!("SELECT status FROM tenant.register_migration(1, {}, 'rows')", pgrx::spi::quote_literal(script));
        assert_eq!(one::<String>(&registered), Some("SUCCESS".into()));
        let id = one::<String>("SELECT id::text FROM tenant.find_institution('rows_a')").unwrap();
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.migrate_institution_schema('{id}')")),
            Some("SUCCESS".into())
        );
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000002", Some("rows_b")).0, "SUCCESS");
        for schema in ["rows_a", "rows_b"] {
            assert_eq!(
                one::<i64>(&format!("SELECT count(*) FROM {schema}.django_migrations WHERE name = '0002_price'")),
                Some(1),
                "{schema}"
            );
            assert_eq!(rows(&format!("SELECT code FROM {schema}.kinds")), vec!["a"], "{schema}");
        }

        // Unmarked: new tenants start empty again.
        Spi::run("SELECT tenant.set_template_rows('django_migrations', false)").unwrap();
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000003", Some("rows_c")).0, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM rows_c.django_migrations"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM rows_c.kinds"), Some(1));
    }

    #[pg_test]
    fn marking_refuses_what_is_not_a_template_table() {
        Spi::run("CREATE VIEW tenant_template.a_view AS SELECT 1 AS one").unwrap();
        let code = |sql: &str| sqlstate_of_statement(sql);
        assert_eq!(code("SELECT tenant.set_template_rows('no_such_table')"), Some("42P01".into()));
        assert_eq!(code("SELECT tenant.set_template_rows('a_view')"), Some("42809".into()));
        assert_eq!(code("SELECT tenant.set_template_rows(NULL)"), Some("22004".into()));
        assert_eq!(code("SELECT tenant.set_template_rows('a_view', NULL)"), Some("22004".into()));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.template_row_tables WHERE table_name = 'a_view'"), Some(0));
    }

    #[pg_test]
    fn a_tenant_claimed_from_the_warm_pool_gets_the_rows_too() {
        Spi::run(
            "CREATE TABLE tenant_template.levels (id serial PRIMARY KEY, label text NOT NULL);
             INSERT INTO tenant_template.levels (label) VALUES ('one'), ('two');
             SELECT tenant.set_template_rows('levels');",
        )
        .unwrap();
        assert_eq!(one::<String>("SELECT status FROM tenant.add_spare_schema()"), Some("SUCCESS".into()));
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000004", Some("rows_pool")).0, "SUCCESS");
        assert_eq!(
            one::<bool>(
                "SELECT (metadata->>'from_pool')::boolean FROM tenant.schema_operations
                          WHERE operation_type = 'CREATE' AND metadata->>'schema_name' = 'rows_pool'"
            ),
            Some(true)
        );
        assert_eq!(rows("SELECT label FROM rows_pool.levels ORDER BY id"), vec!["one", "two"]);
    }

    /// Rows added to a marked table of the template by hand, after tenants
    /// were made, reach them through a migration that inserts the same rows
    /// unless present (ON CONFLICT DO NOTHING): the template, which has them,
    /// keeps one of each; every existing tenant gets them; later tenants copy
    /// them once.
    #[pg_test]
    fn rows_added_to_the_template_by_hand_reach_existing_tenants_through_an_idempotent_migration() {
        serialize_template_changes();
        Spi::run(
            "CREATE TABLE tenant_template.grades (id serial PRIMARY KEY, label text NOT NULL UNIQUE);
             INSERT INTO tenant_template.grades (label) VALUES ('one'), ('two');
             SELECT tenant.set_template_rows('grades');",
        )
        .unwrap();
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000005", Some("rows_late_a")).0, "SUCCESS");
        Spi::run("INSERT INTO tenant_template.grades (label) VALUES ('three')").unwrap();
        assert_eq!(rows("SELECT label FROM rows_late_a.grades ORDER BY id"), vec!["one", "two"]);

        let script = "INSERT INTO grades (label) VALUES ('three') ON CONFLICT (label) DO NOTHING";
        let registered = format!(
            "SELECT status FROM tenant.register_migration(1, {}, 'grade three')",
            pgrx::spi::quote_literal(script)
        );
        assert_eq!(one::<String>(&registered), Some("SUCCESS".into()));
        let id = one::<String>("SELECT id::text FROM tenant.find_institution('rows_late_a')").unwrap();
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.migrate_institution_schema('{id}')")),
            Some("SUCCESS".into())
        );
        assert_eq!(create("e1e1e1e1-0000-4000-8000-000000000006", Some("rows_late_b")).0, "SUCCESS");
        for schema in ["tenant_template", "rows_late_a", "rows_late_b"] {
            assert_eq!(
                rows(&format!("SELECT label FROM {schema}.grades ORDER BY id")),
                vec!["one", "two", "three"],
                "{schema}"
            );
        }
    }
}
