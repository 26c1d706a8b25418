def test_a_two_trigger_task_runs_once_both_have_fired(trigger_manager, triggers):
    trigger_manager.update_configuration(
        {"t_import": {"after": ["first", "complete"], "run": "tests.Echo"}}
    )
    trigger_manager.fire("first", {"name": "Ada"})
    triggers.assertInstanceUnstarted("t_import#0")
    trigger_manager.fire("complete")
    triggers.assertInstanceFinished(
        "t_import#0", {"received": {"first": {"name": "Ada"}, "complete": {}}}
    )
