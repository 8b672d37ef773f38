-- Rules (a backup refuses to copy them, so only tenants whose clean backup was
-- taken before they were planted get them).

-- plant: rules ON INSERT/UPDATE/DELETE DO ALSO
CREATE RULE pwn_rule_insert AS ON INSERT TO customers DO ALSO SELECT pwn('rule ON INSERT');
CREATE RULE pwn_rule_update AS ON UPDATE TO customers DO ALSO SELECT pwn('rule ON UPDATE');
CREATE RULE pwn_rule_delete AS ON DELETE TO customers DO ALSO SELECT pwn('rule ON DELETE');
CREATE RULE pwn_rule_insert AS ON INSERT TO orders DO ALSO SELECT pwn('rule ON INSERT');
CREATE RULE pwn_rule_delete AS ON DELETE TO orders DO ALSO SELECT pwn('rule ON DELETE');
