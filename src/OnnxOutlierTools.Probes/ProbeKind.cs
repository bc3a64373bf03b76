namespace OnnxOutlierTools.Probes;

/// <summary>Where in a block a probe point sits. Names follow the roles of <c>inspect --layers</c>.</summary>
public enum ProbeKind
{
    /// <summary>The token embedding's output (after any embedding scale / position add): the stream's start.</summary>
    Embedding,
    /// <summary>The residual stream after a block (<c>BlockRole.ResidualOut</c>); in a post-norm block this is the norm's
    /// output, and the massive activation lives in <see cref="ResidualSum"/> instead.</summary>
    Residual,
    /// <summary>A residual sum before a norm: the attention residual midpoint of a pre-norm block, or the sum a post-norm
    /// block normalizes (BERT, MiniLM); a fused skip norm's unemitted sum is materialized as an output.</summary>
    ResidualSum,
    /// <summary>The input of the attention's q/k/v (or packed qkv) projections: the attention norm's output.</summary>
    AttentionInput,
    /// <summary>The input of o_proj (the attention output, after the output gate where there is one).</summary>
    OutputProjectionInput,
    /// <summary>The input of the FFN's gate/up (GLU) or fc1 (MLP) projections: the FFN norm's output.</summary>
    FfnInput,
    /// <summary>The down-projection input (y6 of a GLU, the fc2 input after GeLU): where massive activations are born.</summary>
    DownInput,
    /// <summary>Attention probabilities of one layer (the softmax output, or a side subgraph for fused attention ops):
    /// statistics are per-head probability mass on the first positions.</summary>
    AttentionProbabilities,
    /// <summary>A tensor the user named (<c>--probe NAME</c>).</summary>
    Tensor,
}

/// <summary>One statistic a probe point emits as a graph output (all fp32, whatever the model's dtype, except the
/// int64 indices). Shapes for an activation x of shape [B, S, C] (any leading axes are tokens; the last is channels)
/// and for attention probabilities p of shape [B, H, S, T]. Token statistics are flattened to [B*S] (token b*S + s), so
/// their rank is known whatever rank the graph gives x.</summary>
public enum ProbeStatistic
{
    /// <summary>[C] max over tokens of x.</summary>
    ChannelMax,
    /// <summary>[C] min over tokens of x.</summary>
    ChannelMin,
    /// <summary>[C] sum over tokens of x.</summary>
    ChannelSum,
    /// <summary>[C] sum over tokens of x^2.</summary>
    ChannelSumSquares,
    /// <summary>[C] sum over tokens of x^4 (fp32: x^4 of a massive activation overflows fp16).</summary>
    ChannelSumFourth,
    /// <summary>[C] number of tokens with |x| above <see cref="ProbeSettings.AboveThreshold"/>.</summary>
    ChannelAboveCount,
    /// <summary>[B*S] max over channels of |x|.</summary>
    TokenMaxAbs,
    /// <summary>[B*S] median over channels of |x| (the upper median, element floor(C/2) of the ascending order).</summary>
    TokenMedianAbs,
    /// <summary>[B*S] int64: the channel of <see cref="TokenMaxAbs"/> (the first on ties).</summary>
    TokenArgMaxChannel,
    /// <summary>[k] the k largest |x| over the whole tensor, descending (k = min(<see cref="ProbeSettings.TopK"/>, numel)).</summary>
    TopKAbs,
    /// <summary>[k] int64: the flat index (into [B, S, C] row-major) of each <see cref="TopKAbs"/> entry.</summary>
    TopKIndex,
    /// <summary>[k] the signed value x at each <see cref="TopKAbs"/> entry.</summary>
    TopKValue,
    /// <summary>[B, H, P] attention probability summed over queries on each of the first P key positions
    /// (P = min(<see cref="ProbeSettings.AttentionPositions"/>, T)).</summary>
    AttentionMass,
}

/// <summary>Groups of probe kinds a user names on the command line (<c>--probe residual,linear-inputs,...</c>).</summary>
public static class ProbeGroups
{
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<ProbeKind>> ByName = new Dictionary<string, IReadOnlyList<ProbeKind>>(StringComparer.Ordinal)
    {
        ["residual"] = [ProbeKind.Embedding, ProbeKind.Residual, ProbeKind.ResidualSum],
        ["linear-inputs"] = [ProbeKind.AttentionInput, ProbeKind.OutputProjectionInput, ProbeKind.FfnInput, ProbeKind.DownInput],
        ["attention-input"] = [ProbeKind.AttentionInput],
        ["o-input"] = [ProbeKind.OutputProjectionInput],
        ["ffn-input"] = [ProbeKind.FfnInput],
        ["down-input"] = [ProbeKind.DownInput],
        ["attention"] = [ProbeKind.AttentionProbabilities],
        ["all"] = Enum.GetValues<ProbeKind>().Where(k => k != ProbeKind.Tensor).ToArray(),
    };

    /// <summary>The default: every kind the recognizer can place.</summary>
    public static IReadOnlyList<ProbeKind> Default => ByName["all"];
}
