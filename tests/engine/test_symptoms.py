"""The built-in catalogue against DESIGN.md's table (read from the design, not copied)."""

import re
from pathlib import Path

import pytest

from studiodoctor.diagnosis.symptoms import load_catalogue, render_command, template_values

DESIGN = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"


def design_table():
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} not found (shared/ lies beside the checkout in CI and sessions)")
    text = DESIGN.read_text()
    section = text[text.index("## Symptoms"):]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([^`]+)`(?: \(([^)]*)\))? \| ([a-z →-]+) \|", line)
        if m:
            name, aliases, walk = m.groups()
            rows[name] = ([a.strip() for a in (aliases or "").split(",") if a.strip()],
                          [w.strip() for w in walk.split("→")])
    assert len(rows) >= 15
    return rows


def test_every_design_symptom_is_in_the_catalogue_with_its_walk():
    cat = load_catalogue()
    for name, (aliases, walk) in design_table().items():
        sym = cat.symptoms.get(name)
        assert sym is not None, f"symptom {name} missing"
        assert sym.layers == walk, f"{name}: walk {sym.layers} != {walk}"
        for alias in aliases:
            if "–" in alias:  # "520–526": each code
                lo, hi = (int(x) for x in alias.split("–"))
                for code in range(lo, hi + 1):
                    assert cat.lookup(str(code)) is sym
            else:
                assert cat.lookup(alias) is sym, f"alias {alias} of {name}"


def test_cloudflare_codes_lead_to_the_502_walk_with_their_meaning():
    cat = load_catalogue()
    for code in ["504", *map(str, range(520, 528)), "530"]:
        sym = cat.lookup(code)
        assert sym.name == "502"
        assert sym.codes[code]


def test_every_step_has_a_why_and_every_layer_has_commands():
    cat = load_catalogue()
    for sym in cat.symptoms.values():
        for step in sym.steps:
            assert step.why, f"{sym.name}/{step.layer} has no why"
            assert cat.layer_commands(step.layer) or step.commands, f"no commands for layer {step.layer}"


def test_commands_are_bound_to_the_profiles_names_and_leave_no_placeholder(make_profile):
    prof = make_profile({"kubernetes": {"namespace": "master", "context": "gke_prod"},
                         "gcs": {"bucket": "studio-content"}, "celery": {"queues": ["celery"]},
                         "redis": {"url": "redis://:s3cret@10.1.2.3:6379/0"}},
                        public_urls=["https://studio.learningequality.org"])
    values = template_values(prof)
    cat = load_catalogue()
    for layer in cat.layers:
        for cmd in cat.layer_commands(layer):
            text = render_command(cmd, values).text
            assert not re.search(r"(?<!%)\{[a-z_]+\}", text), text  # %{...} is curl's
    kube = render_command(cat.layer_commands("kubernetes")[0], values).text
    assert kube == "kubectl --context gke_prod -n master get deploy,pods -o wide"
    gcs = [render_command(c, values).text for c in cat.layer_commands("gcs")]
    assert any("gs://studio-content" in t for t in gcs)


# Every status code and CloudFlare error a user of Studio can see in a browser or a client, as reported
# ("users get 1020"): HTTP's 4xx/5xx that a proxy or the app answers, CloudFlare's 52x/530, and CloudFlare's
# 1xxx errors (developers.cloudflare.com, "Troubleshooting Cloudflare 1XXX errors").
USER_CODES = (
    [400, 401, 403, 404, 405, 408, 409, 410, 413, 414, 429, 431, 495, 496, 500, 501, 502, 503, 504]
    + list(range(520, 528)) + [530]
    + [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015, 1016,
       1018, 1019, 1020, 1023, 1025, 1033, 1034, 1035, 1036, 1037, 1040, 1041, 1101, 1102, 1104, 1200])


@pytest.mark.parametrize("code", USER_CODES)
def test_every_code_users_see_maps_to_a_walk_and_says_what_it_means(code):
    cat = load_catalogue()
    sym = cat.lookup(str(code))
    assert sym is not None, f"{code}: no walk"
    assert sym.codes.get(str(code)) or str(code) in sym.aliases or sym.name == str(code), \
        f"{code} -> {sym.name} without a note of what it means"
    for said in (f"Error {code}", f"HTTP {code}", f"cf-{code}", f"CloudFlare error {code}"):
        assert cat.lookup(said) is sym, said


def test_every_code_says_what_it_means():
    cat = load_catalogue()
    for sym in cat.symptoms.values():
        for code, note in sym.codes.items():
            assert note.strip(), (sym.name, code)
    coded = {c for s in cat.symptoms.values() for c in s.codes}
    assert {str(c) for c in USER_CODES if str(c) not in ("502",)} - coded - {a for s in cat.symptoms.values()
                                                                             for a in s.aliases} == set()


def test_diagnose_503_walks_readiness_and_a_1xxx_code_prints_its_meaning(make_profile):
    from studiodoctor import engine
    from studiodoctor.registry import Registry

    report = engine.diagnose(make_profile(), "503", registry=Registry())
    assert report.symptom == "503"
    assert [s["layer"] for s in sorted(report.runbook, key=lambda s: s["walk_index"])][:2] == ["cloudflare",
                                                                                            "kubernetes"]
    assert any(n.startswith("503: Service unavailable") for n in report.notes)
    report = engine.diagnose(make_profile(), "Error 1020", registry=Registry())
    assert report.symptom == "permissions"
    assert any(n.startswith("1020: CloudFlare error 1020: access denied by a firewall") for n in report.notes)
