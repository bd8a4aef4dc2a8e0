"""BPMN processes: the SpiffWorkflow runner, the activity registry, default .bpmn files."""
