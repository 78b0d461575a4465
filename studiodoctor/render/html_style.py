"""The HTML page's inline style and its one optional script (copy buttons), as constants.

Everything the page needs is inline: no font, image or script from anywhere. Status is never told by
color alone: every box and hop carries a symbol and a word, and failing boxes a heavier, dashed border.
"""

# symbol and word of each status; "none" is a box whose layers ran no check in this run
SYMBOL = {"ok": "✔", "skip": "–", "warn": "▲", "blocked": "⊘", "error": "?", "fail": "✖", "none": "·",
          "inconclusive": "?", "manual": "✎", "skipped": "–"}
WORD = {"ok": "OK", "skip": "SKIP", "warn": "WARN", "blocked": "BLOCKED", "error": "ERROR", "fail": "FAIL",
        "none": "NOT CHECKED", "inconclusive": "UNSURE", "manual": "MANUAL", "skipped": "SKIP"}
# a hop of the trace: its verdict, symbol and word
HOP_WORD = {"ok": ("✔", "answers"), "bad": ("✖", "bad"), "unknown": ("?", "unknown"),
            "skipped": ("–", "not traced"), "none": ("·", "not traced")}

CSS = """
:root{--ok:#1b7f3b;--warn:#9a6700;--fail:#c62828;--error:#6a1b9a;--skip:#6b7280;--none:#9ca3af;
--bg:#f7f7f8;--fg:#111827;--card:#fff;--line:#d1d5db;font-family:system-ui,-apple-system,"Segoe UI",
Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
body{margin:0 auto;max-width:1180px;padding:12px 16px 40px;line-height:1.35}
h1{font-size:1.35rem;margin:.2em 0}h2{font-size:1.1rem;margin:1.2em 0 .4em}
.meta{color:#374151;font-size:.9rem}.overall{font-weight:700}
.causes{border:3px solid var(--fail);background:#fff5f5;border-radius:8px;padding:8px 12px;margin:10px 0}
.causes.none{border-color:var(--line);background:var(--card)}
.causes h2{margin:.1em 0 .3em}.cause{margin:.4em 0}.cause .what{font-weight:700}
.stack{display:grid;grid-template-columns:minmax(0,1fr) 230px;gap:14px;align-items:start}
.path{display:flex;flex-direction:column;align-items:stretch}
.row{display:flex;flex-wrap:wrap;gap:10px;justify-content:center}
.row>details{flex:1 1 200px;max-width:100%;min-width:0}
.path,.beside,.frame,.pod,.inner,.causes{min-width:0;overflow-wrap:anywhere}
.beside{display:flex;flex-direction:column;gap:10px}.beside h2{margin:0;font-size:.95rem;color:#374151}
.frame{border:2px dashed var(--line);border-radius:10px;padding:8px;margin:2px 0;background:#fbfbfc}
.frame>.label{font-size:.8rem;color:#4b5563;margin:0 0 6px}.frame.cloud{border-style:dotted}
details.box{background:var(--card);border:2px solid var(--line);border-left-width:10px;border-radius:8px;
padding:0;break-inside:avoid}
details.box>summary{cursor:pointer;padding:6px 10px;list-style:none;display:flex;flex-wrap:wrap;gap:4px 10px;
align-items:baseline}
details.box>summary::-webkit-details-marker{display:none}
details.box>summary::before{content:"▸";color:#6b7280}details.box[open]>summary::before{content:"▾"}
.name{font-weight:700}.sub{color:#4b5563;font-size:.82rem;flex-basis:100%}
.badge{font-weight:700;font-size:.8rem;padding:1px 6px;border-radius:4px;color:#fff;white-space:nowrap}
details.box.st-ok,.check.st-ok{border-color:var(--ok)}details.box.st-warn,.check.st-warn{border-color:var(--warn)}
details.box.st-fail,.check.st-fail{border-color:var(--fail)}details.box.st-fail{border-style:dashed;
border-left-style:solid;background:#fff5f5}
details.box.st-error,details.box.st-blocked,.check.st-error,.check.st-blocked{border-color:var(--error)}
details.box.st-skip,.check.st-skip{border-color:var(--skip)}details.box.st-none{border-color:var(--none)}
.b-ok{background:var(--ok)}.b-warn{background:var(--warn)}.b-fail{background:var(--fail)}
.b-error,.b-blocked,.b-inconclusive{background:var(--error)}.b-skip,.b-skipped{background:var(--skip)}
.b-none,.b-manual{background:var(--none);color:#111}
.cause-tag{font-size:.75rem;font-weight:700;color:var(--fail);border:1px solid var(--fail);border-radius:4px;
padding:0 4px}
.inner{padding:4px 10px 10px;border-top:1px solid var(--line)}
.check{border-left:4px solid var(--line);padding:3px 8px;margin:6px 0}.check>summary{cursor:pointer;font-size:.9rem}
.check .id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.85rem}
.check .seen{font-size:.78rem;color:#4b5563}
.check p{margin:.25em 0}.hint{background:#f0f9ff;padding:3px 6px;border-radius:4px}
table{border-collapse:collapse;font-size:.8rem;margin:4px 0;display:block;overflow-x:auto;max-width:100%}
td,th{border:1px solid var(--line);padding:2px 5px;text-align:left;vertical-align:top;word-break:break-word}
dl.ev{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:1px 10px;font-size:.82rem;margin:4px 0}
dl.ev dt{color:#4b5563}dl.ev dd{margin:0;word-break:break-word;font-family:ui-monospace,"DejaVu Sans Mono",
monospace}
pre.cmd{display:flex;gap:6px;align-items:flex-start;margin:4px 0;white-space:pre-wrap;word-break:break-all;
background:#111827;color:#f9fafb;padding:5px 8px;border-radius:5px;font-size:.8rem}
pre.cmd code{flex:1;user-select:all}.safety{color:#fbbf24;white-space:nowrap}
button.copy{font-size:.72rem;padding:1px 6px;cursor:pointer}
.hop{display:grid;grid-template-columns:1fr 34px 1fr;align-items:center;gap:6px;min-height:44px}
.hop svg{grid-column:2;justify-self:center}.hop .label{grid-column:3;font-size:.8rem;color:#374151}
.hop.v-bad .label{color:var(--fail);font-weight:700}.hop.first .label{font-size:.9rem}
.pod .hop{display:flex;flex-direction:column;min-height:0;max-width:180px;text-align:center;gap:2px}
.first-tag{background:var(--fail);color:#fff;border-radius:4px;padding:0 5px;margin-right:4px}
.pod{display:flex;flex-wrap:wrap;align-items:center;gap:0 8px}.pod>details{flex:1 1 220px;min-width:0}
.pod>.hop{flex:0 1 auto}.row>details[open],.pod>details[open]{flex-basis:100%}
.changes li,.timeline li{font-size:.85rem;margin:2px 0}.changes code,.timeline code{font-size:.8rem}
ol.runbook>li{margin:6px 0}.small{font-size:.8rem;color:#4b5563}
@media (max-width:760px){.stack{grid-template-columns:1fr}.row>details,.pod>details{flex-basis:100%}
body{padding:8px}.pod{flex-direction:column;align-items:stretch}.pod>.hop{margin:0 auto;max-width:none}
.hop{grid-template-columns:34px 1fr}.hop svg{grid-column:1}.hop .label{grid-column:2}.pod .hop svg{transform:rotate(90deg)}}
@media print{:root{background:#fff}body{max-width:none;padding:0;font-size:10pt}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}button.copy{display:none}
.stack{grid-template-columns:minmax(0,1fr) 170px}details.box,.check,.cause,li{break-inside:avoid}
pre.cmd{background:#fff;color:#000;border:1px solid #999}.safety{color:#555}a{color:inherit}}
"""

# Copy buttons are hidden until this runs: without it (scripts off, a sanitizing viewer) the command
# text stays selectable as it is, and nothing of the page depends on it. It asks nothing of the network.
SCRIPT = ("document.querySelectorAll('button.copy').forEach(function(b){b.hidden=false;"
          "b.addEventListener('click',function(){var t=b.parentNode.querySelector('code').textContent;"
          "if(navigator.clipboard){navigator.clipboard.writeText(t).then(function(){b.textContent='copied';});}});});")
