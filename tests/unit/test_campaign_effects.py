"""The generator's planted campaign designs (shoplake.generate.CAMPAIGNS) at a size where
most effects exceed the minimum detectable effect: the shared 600-user shop is far too
small for that (its MDEs are 0.14-0.19 against effects of 0.005-0.06, see
tests/integration/test_campaign.py), so the direction check is exercised here on
binomial draws at the planted rates, through the same test functions the job uses."""

from __future__ import annotations

import math

import numpy as np

from common import stats
from jobs.campaign.results import comparison_pairs
from shoplake.generate import CAMPAIGNS


def test_planted_designs_at_scale_recover_every_effect():
    rng = np.random.Generator(np.random.PCG64(7))
    recipients = 40_000
    above, below = [], []
    for camp in CAMPAIGNS:
        rates = {name: rate for name, rate, _ in camp.variants}
        n = {name: int(recipients * share) for name, _, share in camp.variants}
        x = {name: int(rng.binomial(n[name], rates[name])) for name in rates}
        for treat, ref in comparison_pairs(list(rates)):
            true = rates[treat] - rates[ref]
            r = stats.two_proportion_ztest(x[treat], n[treat], x[ref], n[ref], interval="newcombe")
            assert r.ci_low <= true <= r.ci_high, (camp.campaign_id, treat, ref, true, r)
            if true == 0:
                assert not r.significant(0.05), (camp.campaign_id, treat, ref, r.p_value)
                continue
            mde = stats.mde_two_proportions(rates[ref], n[treat], n[ref])
            if abs(true) >= mde:
                assert math.copysign(1, r.diff) == math.copysign(1, true)
                above.append((camp.campaign_id, treat, ref))
            else:
                below.append((camp.campaign_id, treat, ref, true, round(mde, 4)))
    # Every planted non-null effect but CMP004 A vs control (0.005 on 0.015) is above the MDE here.
    assert len(above) == 6 and [b[:3] for b in below] == [("CMP004", "A", "control")], (above, below)
