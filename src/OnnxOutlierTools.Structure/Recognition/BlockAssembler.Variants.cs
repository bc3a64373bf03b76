using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Block and model roles of newer models (#7): Gemma's sandwich norms (a norm on each sublayer output
/// before its residual add), the embedding scale and logit soft-capping. Their rules run through the matcher
/// (when the assembler has one), so the tracer reports their near misses.</summary>
internal sealed partial class BlockAssembler
{
    private Dictionary<Value, List<NormRole>>? _normsByInput;
    private readonly HashSet<Value> _sublayerOutputs = [];
    private Rule<NormRole>? _postSublayerRule;

    private Rule<NormRole> PostSublayerRule =>
        _postSublayerRule ??= SandwichNormRules.PostSublayer(v => _normByOutput.GetValueOrDefault(v), v => _sublayerOutputs.Contains(GraphWalk.Upstream(v)));

    /// <summary>The rules the assembler runs through the matcher (for the tracer).</summary>
    public IEnumerable<IRule> Rules => _matcher is null ? [] : [PostSublayerRule];

    /// <summary>A sandwich norm (Gemma 2/3): a norm on the sublayer output whose own output joins the residual.</summary>
    private NormRole? PostSublayerNorm(Value sublayerOutput)
    {
        if (_matcher is null) return null;
        _normsByInput ??= _norms.Where(n => n.Input.Value is not null).GroupBy(n => GraphWalk.Upstream(n.Input.Value!)).ToDictionary(g => g.Key, g => g.ToList());
        if (!_normsByInput.TryGetValue(GraphWalk.Upstream(sublayerOutput), out var candidates)) return null;
        _sublayerOutputs.Add(GraphWalk.Upstream(sublayerOutput));
        foreach (var norm in candidates)
            if (_matcher.TryMatch(PostSublayerRule, norm.Output) is not null && ResidualJoin(norm.Output) is not null) return norm;
        return null;
    }

    /// <summary>OLMo 2's block: norms only on the sublayer outputs, attention and FFN read the residual stream itself
    /// (a post-norm test would take the attention's residual for its input). The stream is never normalized between
    /// blocks, as in a pre-norm block, so it is reported as one with no pre-norms.</summary>
    private BlockRole? OutputNormsOnly(int index, AttentionRole attention, FfnRole ffn, Join attnJoin, Join ffnJoin, Value qkvInput,
        NormRole? postAttention, NormRole? postFfn)
    {
        if (postAttention is null || postFfn is null || NormFeeding(qkvInput) is not null || NormFeeding(ffn.Up.Input) is not null) return null;
        if (!GraphWalk.SameTensor(attnJoin.Residual, qkvInput) || attnJoin.Sum.Value is not { } afterAttention
            || !GraphWalk.SameTensor(ffn.Up.Input, afterAttention) || !GraphWalk.SameTensor(ffnJoin.Residual, afterAttention)) return null;
        return new BlockRole
        {
            Index = index,
            Placement = NormPlacement.PreNorm,
            Attention = attention,
            AttentionResidual = attnJoin.Sum,
            Ffn = ffn,
            ResidualIn = TensorRef.Of(attnJoin.Residual!),
            ResidualOut = ffnJoin.Sum,
        };
    }

    private Rule<SoftCapRole>? _logitSoftcapRule;
    private Rule<EmbeddingScaleRole>? _embeddingScaleRule;

    /// <summary>Rules the model-level step ran (for the tracer), once it has run.</summary>
    public IEnumerable<IRule> ModelRules => new IRule?[] { _embeddingScaleRule, _logitSoftcapRule }.Where(r => r is not null)!;

    /// <summary>cap * tanh(logits / cap) right after the LM head (rooted at the outer Mul, three nodes on).</summary>
    private SoftCapRole? LogitSoftcap(LinearRole? lmHead)
    {
        if (lmHead is null || _matcher is null) return null;
        _logitSoftcapRule = ScaleAndCapRules.LogitSoftcap(x => x == lmHead.Output);
        static IEnumerable<Value> Next(Value v) => v.Consumers.Select(n => n.Output(0)).Where(o => o is not null)!;
        foreach (var root in Next(lmHead.Output).SelectMany(Next).SelectMany(Next))
            if (_matcher.TryMatch(_logitSoftcapRule, root) is { } m) return _logitSoftcapRule.Build(m);
        return null;
    }

    private EmbeddingScaleRole? EmbeddingScale(EmbeddingRole? embedding)
    {
        if (embedding is null || _matcher is null) return null;
        long? hidden = embedding.TokenTable.Shape is [_, { Value: long h }] ? h : null;
        _embeddingScaleRule = ScaleAndCapRules.EmbeddingScale(v => v == embedding.Output, hidden);
        foreach (var (node, _, _) in GraphWalk.Consumers(embedding.Output, depth: 2))
            if (node.Output(0) is { } o && _matcher.TryMatch(_embeddingScaleRule, o) is { } m) return _embeddingScaleRule.Build(m);
        return null;
    }

    /// <summary>Gemma's signature (sandwich norms and a sqrt(hidden) embedding scale) without explicit (1 + gamma) Adds:
    /// the builder pre-added the 1, so the initializers are the effective gains.</summary>
    private static SandwichNormGainsHint? GemmaHint(List<BlockRole> blocks, EmbeddingScaleRole? scale)
    {
        bool sandwich = blocks.Any(b => b.PostAttentionNorm is not null && b.PostFfnNorm is not null);
        if (!sandwich) return null;
        bool explicitOffset = blocks.SelectMany(b => b.Norms).Any(n => n.Norm.GainForm == NormGainForm.OnePlusGain);
        return new SandwichNormGainsHint(explicitOffset, scale?.IsSqrtHidden == true);
    }

    /// <summary>A step of logit soft-capping (Div/Mul by a scalar, Tanh), which the LM head's output may pass to reach the logits.</summary>
    private static bool IsSoftcapStep(Node n) =>
        n.Is("Tanh") || (n.Is("Div") || n.Is("Mul")) && n.Inputs.Any(i => i is not null && ConstantResolver.ScalarOf(i) is not null);
}
