"""Which of our columns matches which published "AUC" on Ali-CCP.

The literature disagrees on what "CVR AUC" means: the ESMM paper scores pCVR on clicked
impressions only, while several libraries score purchase against all impressions. Each entry
states what the source computes in the same terms as ccp.tasks (rows, label, score), so a
test can check that our column really computes it. Published values are the sources' full-data
numbers (shared/ALICCP.md), shown for orientation only: a synthetic or sampled run is not
comparable with them.
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS = {"all": "all impressions", "clicked": "clicked impressions only"}
LABELS = {"click": "click", "purchase": "purchase", "click_and_purchase": "click and purchase"}
SCORES = {"ctr": "pCTR", "cvr": "pCVR (conditional on click)",
          "ctcvr": "pCTCVR = P(click and purchase), the entire-space purchase probability"}


@dataclass(frozen=True)
class Entry:
    source: str
    their_name: str
    rows: str  # key of ROWS
    label: str  # key of LABELS
    score: str  # key of SCORES: which of our outputs plays the part of their score
    ours: str  # our column (a key of ccp.tasks.TASKS)
    published: str  # the source's full-data numbers, or "" when it gives none
    # True when the match needs purchase-without-click rows dropped (our default): then
    # "purchase over all impressions" equals "click and purchase".
    needs_pwc_dropped: bool = False
    note: str = ""


ENTRIES = (
    Entry("ESMM paper (Ma et al., SIGIR 2018), Table 2", "CVR AUC", "clicked", "purchase", "cvr",
          "cvr", "ESMM 0.6856 ± 0.0037; BASE 0.6600 (10 runs)"),
    Entry("ESMM paper (Ma et al., SIGIR 2018), Table 2", "CTCVR AUC", "all",
          "click_and_purchase", "ctcvr", "ctcvr", "ESMM 0.6532 ± 0.0049; BASE 0.6207"),
    Entry("AITM paper (Xi et al., KDD 2021), Table 2", "click AUC", "all", "click", "ctr", "ctr",
          "LightGBM 0.5837; MLP 0.6048; ESMM 0.6022; MMoE 0.6047; PLE 0.6039; AITM 0.6043"),
    Entry("AITM paper (Xi et al., KDD 2021), Table 2", "purchase (conversion) AUC", "all",
          "purchase", "ctcvr", "ctcvr",
          "LightGBM 0.5870; MLP 0.5806; ESMM 0.6291; MMoE 0.6420; PLE 0.6417; AITM 0.6525",
          needs_pwc_dropped=True,
          note="their conversion output is an entire-space purchase probability"),
    Entry("common multi-task libraries' Ali-CCP examples", "CTR AUC", "all", "click", "ctr",
          "ctr", "one industrial library's CI: MMoE 0.616; PLE 0.616"),
    Entry("common multi-task libraries' Ali-CCP examples", "CVR AUC, head trained on purchase "
          "over all impressions", "all", "purchase", "ctcvr", "ctcvr",
          "one industrial library's CI: MMoE 0.658; PLE 0.658", needs_pwc_dropped=True,
          note="not the ESMM paper's CVR AUC: compare with our CTCVR column"),
    Entry("common multi-task libraries' Ali-CCP examples", "CVR AUC, conditional pCVR scored on "
          "all impressions", "all", "purchase", "cvr", "cvr_entire", "",
          note="our entire-space purchase AUC column, kept for this comparison"),
)
