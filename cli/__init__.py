"""The top floor: the `gangway` command. Nothing below it (flows, tasks, gangway) imports it."""
