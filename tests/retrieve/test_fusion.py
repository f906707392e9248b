from ragworks.retrieve.fusion import min_max, reciprocal_rank_fusion, weighted_fusion


def test_rrf_sums_reciprocal_ranks_across_legs():
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(3, 12.0), (1, 5.0)]
    fused = dict(reciprocal_rank_fusion([dense, lexical], k=60))
    assert fused[1] == 1 / 61 + 1 / 62
    assert fused[3] == 1 / 63 + 1 / 61
    assert fused[2] == 1 / 62
    assert [d for d, _ in reciprocal_rank_fusion([dense, lexical], k=60)] == [1, 3, 2]


def test_rrf_ignores_raw_score_scales():
    a = reciprocal_rank_fusion([[(1, 1000.0), (2, 999.0)], [(2, 0.2), (1, 0.1)]], k=10)
    b = reciprocal_rank_fusion([[(1, 0.5), (2, 0.4)], [(2, 9.0), (1, 8.0)]], k=10)
    assert a == b


def test_weighted_fusion_uses_min_max_normalized_scores():
    assert min_max([(1, 3.0), (2, 1.0), (3, 2.0)]) == {1: 1.0, 2: 0.0, 3: 0.5}
    assert min_max([(1, 7.0)]) == {1: 1.0}
    fused = dict(weighted_fusion([[(1, 0.9), (2, 0.5)], [(2, 10.0), (3, 0.0)]], [0.7, 0.3]))
    assert fused == {1: 0.7, 2: 0.3, 3: 0.0}
