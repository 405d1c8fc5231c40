"""The meaning checks of the rule files, after their shape is known to fit schema.json.

`shape` words schema.json's errors; `top_level` reads notifications.yaml's own settings;
`declarations` gathers the definitions, events and notifications of every file (the checks across
files); `blocks` checks each block of one rule, `reads` what a rule reads of its events, and `rule`
puts a rule together from its blocks. Each check returns its problems; none stops another.
"""
