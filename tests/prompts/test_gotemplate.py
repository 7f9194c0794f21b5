"""The Go text/template subset: syntax, Go's evaluation rules, and errors that say where."""

from __future__ import annotations

import pytest

from imgscribe.errors import InvalidRequest
from imgscribe.prompts import Template, TemplateError
from imgscribe.prompts.gofuncs import Struct, go_float, go_json, printf


def render(text: str, values: dict | None = None) -> str:
    # Values always carry Response, as Ollama's do: a template without .Messages/.Response gets one appended.
    return Template.parse(text).render({"Response": "", **(values or {})})


def message(**fields) -> Struct:
    return Struct("*template.templateMessage", {"Role": "", "Content": "", **fields})


# -- text, trim markers, comments -----------------------------------------------------------------


def test_text_and_fields():
    assert render("Hi {{ .Prompt }}!", {"Prompt": "you"}) == "Hi you!"
    assert render("{{.Prompt}}{{.System}}", {"Prompt": "a", "System": "b"}) == "ab"


def test_trim_markers_eat_all_white_space_on_their_side():
    assert render("a  \n\t {{- .Prompt -}} \n\n b", {"Prompt": "X"}) == "aXb"
    assert render("a {{- .Prompt }} b", {"Prompt": "X"}) == "aX b"
    assert render("a {{ .Prompt -}} b", {"Prompt": "X"}) == "a Xb"
    # '-' glued to a number is a negative number, not a trim marker
    assert render("a {{-3}} b") == "a -3 b"


def test_comments():
    assert render("a{{/* a comment */}}b") == "ab"
    assert render("a  {{- /* multi\nline */ -}}  b") == "ab"
    with pytest.raises(TemplateError, match="comment ends before closing delimiter"):
        Template.parse("{{/* c */ .Prompt }}")
    with pytest.raises(TemplateError, match="unclosed comment"):
        Template.parse("{{/* c ")


def test_literals_and_escapes():
    assert render(r'{{ "a\tb\n\u00e9" }}|{{ `raw\n` }}|{{ 42 }}|{{ 1.5 }}|{{ 0x10 }}|{{ true }}|{{ false }}|{{ print nil }}') == (
        "a\tb\né|raw\\n|42|1.5|16|true|false|<nil>"
    )
    assert render("{{ 'a' }}") == "97"  # a character constant is a rune


# -- control structures ---------------------------------------------------------------------------


def test_if_else_if_else():
    t = Template.parse('{{ if eq .Prompt "a" }}A{{ else if eq .Prompt "b" }}B{{ else }}other{{ end }}')
    assert [t.render({"Prompt": p, "Response": ""}) for p in "abc"] == ["A", "B", "other"]


def test_truthiness_follows_go():
    t = Template.parse("{{ if .System }}yes{{ else }}no{{ end }}")
    falsy = ["", 0, 0.0, None, [], {}, False]
    truthy = ["x", 1, -1.5, [0], {"a": 1}, True, Struct("T", {})]
    assert {t.render({"System": v, "Response": ""}) for v in falsy} == {"no"}
    assert {t.render({"System": v, "Response": ""}) for v in truthy} == {"yes"}


def test_range_with_variables_and_else():
    t = "{{ range $i, $m := .Messages }}{{ $i }}:{{ $m.Role }}={{ .Content }};{{ else }}empty{{ end }}"
    msgs = [message(Role="user", Content="hi"), message(Role="assistant", Content="yo")]
    assert render(t, {"Messages": msgs}) == "0:user=hi;1:assistant=yo;"
    assert render(t, {"Messages": []}) == "empty"
    assert render(t, {"Messages": None}) == "empty"


def test_range_one_variable_is_the_element_and_maps_go_in_key_order():
    assert render("{{ range $m := .Messages }}{{ $m }}{{ end }}", {"Messages": ["a", "b"]}) == "ab"
    assert render("{{ range $k, $v := .Messages }}{{ $k }}={{ $v }};{{ end }}", {"Messages": {"b": 2, "a": 1}}) == "a=1;b=2;"
    assert render("{{ range 3 }}{{ . }}{{ end }}") == "012"


def test_break_and_continue():
    t = "{{ range .Messages }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}"
    assert render(t, {"Messages": [1, 2, 3, 4, 5]}) == "13"


def test_with_and_else_with():
    t = "{{ with .System }}[{{ . }}]{{ else with .Prompt }}({{ . }}){{ else }}none{{ end }}"
    assert render(t, {"System": "s", "Prompt": "p"}) == "[s]"
    assert render(t, {"System": "", "Prompt": "p"}) == "(p)"
    assert render(t, {"System": "", "Prompt": ""}) == "none"


def test_variables_scope_and_assignment():
    t = '{{ $x := "a" }}{{ if true }}{{ $x = "b" }}{{ $y := "c" }}{{ $y }}{{ end }}{{ $x }}'
    assert render(t) == "cb"
    # the scope of a variable declared in a block ends with the block
    with pytest.raises(TemplateError, match=r"line 1, column 39: undefined variable '\$y'"):
        Template.parse("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}")
    assert render("{{ $.Prompt }}{{ range .Messages }}{{ $.Prompt }}{{ end }}", {"Prompt": "p", "Messages": [1, 2]}) == "ppp"


def test_pipelines_and_parentheses():
    assert render('{{ "abc" | len }}') == "3"
    assert render('{{ "%s-%s" | printf "x" }}') == "x%!(EXTRA string=%s-%s)"  # the piped value comes last
    assert render('{{ .Prompt | printf "<%s>" }}', {"Prompt": "p"}) == "<p>"
    assert render("{{ (len .Messages) }}|{{ eq (len (slice .Messages 1)) 2 }}", {"Messages": [1, 2, 3]}) == "3|true"
    assert render("{{ (index .Messages 0).Role }}", {"Messages": [message(Role="user")]}) == "user"


# -- functions ------------------------------------------------------------------------------------


def test_and_or_return_the_deciding_operand():
    assert render('{{ and 1 "x" 2 }}|{{ and 1 0 2 }}|{{ or 0 "" "z" }}|{{ or 0 false }}|{{ not 0 }}|{{ not "a" }}') == (
        "2|0|z|false|true|false"
    )
    # and/or stop early: the failing index is never evaluated
    assert render("{{ or 1 (index .Messages 9) }}|{{ and 0 (index .Messages 9) }}", {"Messages": []}) == "1|0"


def test_comparisons():
    assert render('{{ eq 1 1 }}{{ eq "a" "b" "a" }}{{ ne 1 2 }}{{ lt 1 2 }}{{ le 2 2 }}{{ gt "b" "a" }}{{ ge 1 2 }}') == (
        "truetruetruetruetruetruefalse"
    )
    assert render('{{ eq .Missing "x" }}') == "false"  # nil against a value: not equal, no error
    with pytest.raises(TemplateError, match="error calling eq: incompatible types for comparison"):
        render("{{ eq 1 1.0 }}")
    with pytest.raises(TemplateError, match="error calling lt: invalid type for comparison"):
        render("{{ lt true false }}")


def test_len_index_slice():
    v = {"Messages": ["a", "b", "c"], "Prompt": "héllo"}
    assert render("{{ len .Messages }} {{ len .Prompt }} {{ index .Messages 2 }} {{ slice .Messages 1 }} {{ slice .Messages 0 2 }}", v) == (
        "3 6 c [b c] [a b]"
    )
    assert render('{{ slice "abcdef" 1 3 }}|{{ index .M "k" }}|{{ index .M "nope" }}', {"M": {"k": "v"}}) == "bc|v|<no value>"
    with pytest.raises(TemplateError, match="error calling index: index out of range: 3"):
        render("{{ index .Messages 3 }}", v)
    with pytest.raises(TemplateError, match="error calling slice: invalid slice index: 2 > 1"):
        render("{{ slice .Messages 2 1 }}", v)


def test_print_and_printf():
    assert render('{{ print 1 2 "a" "b" 3 }}') == "1 2ab3"
    assert render('{{ printf "%s|%d|%q|%v|%5.2f|%-3s|%03d|%t|%%" "s" 7 "q" 1.5 3.14159 "l" 7 true }}') == (
        's|7|"q"|1.5| 3.14|l  |007|true|%'
    )
    assert printf("%d", "x") == "%!d(string=x)"
    assert printf("%s") == "%!s(MISSING)"
    assert printf("%s|%v", 5, 5) == "%!s(int=5)|5"
    assert printf("%q|%s|%v|%d", ["a", "b"], None, None, None) == '["a" "b"]|%!s(<nil>)|<nil>|%!d(<nil>)'


def test_go_printing_of_values():
    assert render("{{ .Messages }}|{{ .M }}|{{ .S }}|{{ .F }}|{{ .G }}", {
        "Messages": [1, "a", None], "M": {"b": 1, "a": [2]}, "S": Struct("T", {"A": "x", "B": []}), "F": 1e6, "G": 2.0,
    }) == "[1 a <nil>]|map[a:[2] b:1]|{x []}|1e+06|2"  # fmt: skip
    assert [go_float(x) for x in (123456.0, 1234567.0, 0.0001, 0.00001)] == ["123456", "1.234567e+06", "0.0001", "1e-05"]


def test_json_is_go_json():
    assert render("{{ json .M }}", {"M": {"b": 1.0, "a": "<&>", "c": [True, None]}}) == '{"a":"\\u003c\\u0026\\u003e","b":1,"c":[true,null]}'
    assert go_json(Struct("T", {"Z": 1, "A": 2})) == '{"Z":1,"A":2}'  # a struct keeps its field order


def test_ollama_date_functions_and_typescript_type():
    import datetime

    today = datetime.date.today()
    assert render("{{ currentDate }}|{{ yesterdayDate }}") == f"{today.isoformat()}|{(today - datetime.timedelta(days=1)).isoformat()}"
    assert render("{{ toTypeScriptType . }}") == "any"


# -- what Ollama checks on a template -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [  # Ollama's TestParse cases and the names its Vars reports
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        ("{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}", ["prompt", "response", "system", "tools"]),
        ("{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}", ["content", "messages", "role"]),
        ('{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}',
         ["content", "messages", "role", "toolname"]),
        (('{{- range .Messages }}\n{{- if eq .Role "system" }}SYSTEM:\n{{- else if eq .Role "user" }}USER:\n'
          '{{- else if eq .Role "assistant" }}ASSISTANT:\n{{- else if eq .Role "tool" }}TOOL:\n{{- end }} {{ .Content }}\n{{- end }}'),
         ["content", "messages", "role"]),
        (("{{- if .Messages }}\n{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
          "{{ else -}}\n{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
          "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n{{- end -}}"),
         ["content", "messages", "prompt", "response", "role", "system"]),
    ],
)
def test_names_as_ollama_vars(text, names):
    t = Template.parse(text)
    assert t.names() == names
    assert t.uses("Messages") == ("messages" in names)


def test_uses_sees_variable_chains():
    assert Template.parse("{{ range $.Messages }}{{ end }}").uses("messages")
    assert not Template.parse("{{ .Prompt }}").uses("messages")


def test_response_is_appended_when_missing():
    assert Template.parse("{{ .Prompt }}: ").render({"Prompt": "p", "Response": "r"}) == "p: r"
    assert Template.parse("{{ .Prompt }}{{ .Response }}!").render({"Prompt": "p", "Response": "r"}) == "pr!"


def test_render_until_response():
    t = Template.parse("<s>{{ .Prompt }}</s>{{ if .Response }}<a>{{ .Response }}</a>{{ end }}<end>")
    assert t.render_until_response({"Prompt": "p", "Response": "r"}) == "<s>p</s><a>r"
    assert t.render_until_response({"Prompt": "p", "Response": ""}) == "<s>p</s>"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ .Prompt ", "template line 1, column 1: unclosed action"),
        ("a\nb {{ .Prompt }}\n  {{ foo .Prompt }}", "template line 3, column 6: function 'foo' not defined"),
        ("x\n{{ end }}", "template line 2, column 4: unexpected {{end}}"),
        ("{{ else }}", "template line 1, column 4: unexpected {{else}}"),
        ("{{ if .Prompt }}\nopen", "template line 1, column 4: {{if}} has no matching {{end}}"),
        ("{{ range .Messages }}{{ else }}{{ else }}{{ end }}", "template line 1, column 35: expected {{end}} for {{range}}; found {{else}}"),
        ('\n\n  {{ define "x" }}{{ end }}', "template line 3, column 6: 'define' is not supported"),
        ('{{ template "x" }}', "template line 1, column 4: 'template' is not supported"),
        ('{{ block "x" . }}{{ end }}', "template line 1, column 4: 'block' is not supported"),
        ("{{ break }}", "template line 1, column 4: {{break}} outside {{range}}"),
        ("{{ $x }}", "template line 1, column 4: undefined variable '$x'"),
        ("{{ $x = 1 }}", "template line 1, column 4: undefined variable '$x'"),
        ("{{ $a, $b := .Messages }}", "template line 1, column 4: too many declarations in command"),
        ("{{ range $a, $b, $c := .Messages }}{{ end }}", "template line 1, column 10: too many declarations in range"),
        ("{{ }}", "template line 1, column 4: missing value for command"),
        ("{{ (len .Messages }}", "unclosed left paren"),
        ('{{ "x }}', "unterminated quoted string"),
        ("{{ .Prompt | 3 }}", "non executable command in pipeline stage 2"),
        ("{{ .Prompt.. }}", "template line 1, column 11: unexpected '.' in operand"), ("{{ true.X }}", "unexpected . after term 'true'"),
    ],
)
def test_parse_errors_name_line_and_column(text, message):
    with pytest.raises(TemplateError) as err:
        Template.parse(text)
    assert message in str(err.value)


def test_template_error_is_a_bad_request():
    assert issubclass(TemplateError, InvalidRequest) and TemplateError.status == 400


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("{{ range .Messages }}\n{{ .Foo }}{{ end }}", {"Messages": [message()]},
         "template line 2, column 4: can't evaluate field Foo in type *template.templateMessage"),
        ("{{ .Prompt.Name }}", {"Prompt": "p"}, "can't evaluate field Name in type string"),
        ("{{ .Missing.Name }}", {}, "nil pointer evaluating interface {}.Name"),
        ("{{ len 3 }}", {}, "error calling len: len of type int"),
        ("{{ not }}", {}, "wrong number of args for not: want 1 got 0"),
        ("{{ nil }}", {}, "nil is not a command"),
        ('{{ "a" "b" }}', {}, "can't give argument to non-function"),
        ("{{ range .Prompt }}{{ end }}", {"Prompt": "abc"}, "range can't iterate over abc"),
    ],
)
def test_render_errors(text, values, message):
    with pytest.raises(TemplateError) as err:
        render(text, values)
    assert message in str(err.value)


def test_missing_top_level_key_is_nil_as_in_ollamas_map():
    # Ollama executes over map[string]any with missingkey=zero: a missing key prints "<no value>"
    assert render("{{ .Nope }}|{{ if .Nope }}y{{ else }}n{{ end }}") == "<no value>|n"


# -- a template from a request is bounded: a clear error, never a hang or a traceback ----------------


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{{range 100000000}}x{{end}}", "more than 1,000,000 steps"),
        ("{{range 10}}{{range 1000000}}{{end}}{{end}}", "more than 1,000,000 steps"),  # empty bodies count too
        ("{{range 30}}" + "x" * 1_000_000 + "{{end}}", "longer than 8,388,608 characters"),
        ("{{if 1}}" * 3000 + "{{end}}" * 3000, "nests too deeply"),
        ("{{" + "(" * 3000 + "1" + ")" * 3000 + "}}", "nests too deeply"),
    ],
)
def test_hostile_templates_are_clear_errors(text, said):
    with pytest.raises(TemplateError, match=said):
        Template.parse(text).render({})
