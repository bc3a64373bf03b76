namespace OnnxOutlierTools.Probes;

/// <summary>The names probes are known by: rule names (one per <see cref="ProbeKind"/>, counted in the pass result and
/// written as the <c>onnx_outliers.rule</c> provenance of every probe node), point ids and graph output names.
/// <list type="bullet">
/// <item>Point ids: <c>embedding</c>; <c>block{i}.{kind}</c> for <c>residual</c>, <c>attention-input</c>, <c>o-input</c>,
/// <c>ffn-input</c>, <c>down-input</c>, <c>attention</c>; <c>block{i}.residual-sum.attention</c> (the sum after the
/// attention residual add: a pre-norm block's midpoint, or the sum a post-norm block's attention norm reads) and
/// <c>block{i}.residual-sum.ffn</c> (post-norm only: the sum the FFN norm reads); <c>tensor:{name}</c> for a user tensor.</item>
/// <item>Graph outputs: <c>probe.{id}.{statistic}</c>, the statistic in kebab case (<c>channel-max</c>, <c>channel-min</c>,
/// <c>channel-sum</c>, <c>channel-sum-squares</c>, <c>channel-sum-fourth</c>, <c>channel-above-count</c>, <c>token-max-abs</c>,
/// <c>token-median-abs</c>, <c>token-arg-max-channel</c>, <c>top-k-abs</c>, <c>top-k-index</c>, <c>top-k-value</c>,
/// <c>attention-mass</c>); a name the model already uses is numbered (<c>_1</c>), and the manifest always has the
/// name actually written.</item>
/// </list></summary>
public static class ProbeNames
{
    /// <summary>The provenance pass name of every probe node.</summary>
    public const string Pass = "probe";

    /// <summary>The rule name of a kind (lower-case, '-'-separated; the same words <c>--probe</c> accepts).</summary>
    public static string Rule(this ProbeKind kind) => kind switch
    {
        ProbeKind.Embedding => "embedding",
        ProbeKind.Residual => "residual",
        ProbeKind.ResidualSum => "residual-sum",
        ProbeKind.AttentionInput => "attention-input",
        ProbeKind.OutputProjectionInput => "o-input",
        ProbeKind.FfnInput => "ffn-input",
        ProbeKind.DownInput => "down-input",
        ProbeKind.AttentionProbabilities => "attention",
        ProbeKind.Tensor => "tensor",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static IReadOnlyList<string> AllRules { get; } = Enum.GetValues<ProbeKind>().Select(Rule).ToArray();

    /// <summary>The statistic's part of an output name (<c>ChannelSumSquares</c> -> <c>channel-sum-squares</c>).</summary>
    public static string Name(this ProbeStatistic statistic)
    {
        string s = statistic.ToString();
        var chars = new System.Text.StringBuilder(s.Length + 4);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsUpper(s[i]) && i > 0) chars.Append('-');
            chars.Append(char.ToLowerInvariant(s[i]));
        }
        return chars.ToString();
    }

    /// <summary>The output name the pass asks for (<c>probe.block3.down-input.channel-max</c>).</summary>
    public static string Output(string pointId, ProbeStatistic statistic) => $"probe.{pointId}.{statistic.Name()}";

    public static string BlockPoint(int block, ProbeKind kind) => $"block{block}.{kind.Rule()}";
    public static string ResidualSumAttention(int block) => $"block{block}.residual-sum.attention";
    public static string ResidualSumFfn(int block) => $"block{block}.residual-sum.ffn";
    public static string TensorPoint(string name) => $"tensor:{name}";

    /// <summary>The statistics an activation point emits (all twelve, in this order).</summary>
    public static IReadOnlyList<ProbeStatistic> ActivationStatistics { get; } =
        Enum.GetValues<ProbeStatistic>().Where(s => s != ProbeStatistic.AttentionMass).ToArray();
}
