namespace OnnxOutlierTools.Probes;

/// <summary>Settings that shape the in-graph reductions (recorded in the manifest, so statistics can be interpreted
/// and reproduced).</summary>
public sealed record ProbeSettings
{
    /// <summary>Kinds of points to probe (default: all).</summary>
    public IReadOnlyList<ProbeKind> Kinds { get; init; } = ProbeGroups.Default;

    /// <summary>Extra tensors to probe by name (kind <see cref="ProbeKind.Tensor"/>).</summary>
    public IReadOnlyList<string> Tensors { get; init; } = [];

    /// <summary>Size of the global top-k |x| list per point and batch.</summary>
    public int TopK { get; init; } = 32;

    /// <summary>Number of leading key positions whose attention mass is measured.</summary>
    public int AttentionPositions { get; init; } = 8;

    /// <summary>|x| threshold of <see cref="ProbeStatistic.ChannelAboveCount"/> (LLM.int8()'s 6.0 by default).</summary>
    public float AboveThreshold { get; init; } = 6f;

    /// <summary>The per-token median |x| is taken over about this many channels when a point has more: channels
    /// 0, s, 2s, ... with s = floor(C / M) (ceil(C / s) channels); 0 takes every channel. An exact median is a selection over all C channels per token,
    /// which on a dim-1024 decoder cost more than the rest of the probes together (half of ORT's TopK time goes to
    /// k = C/2); the median of a 128-channel sample is within about 10% of the full median for Gaussian-like rows (the
    /// sample median's standard error), and a median is robust to the few outlier channels a sample may hit, which is
    /// what a max/median ratio of 100 or 1000 needs.</summary>
    public int MedianChannels { get; init; } = 128;
}

/// <summary>One probed tensor: what it is in the model's structure and which graph outputs carry its statistics.</summary>
public sealed record ProbePoint
{
    /// <summary>Stable id, e.g. <c>block3.down-input</c>, <c>embedding</c>, <c>block0.residual-sum.attention</c>.</summary>
    public required string Id { get; init; }
    public required ProbeKind Kind { get; init; }
    /// <summary>The block index; null for model-level points (embedding, user tensors outside blocks).</summary>
    public int? Block { get; init; }
    /// <summary>The role path as in the layers JSON (<c>ffn.down.input</c>, <c>attentionNorm.output</c>, ...).</summary>
    public required string Role { get; init; }
    /// <summary>The probed value's name in the probed model (for an unemitted skip-norm sum, the output the pass added).</summary>
    public required string Tensor { get; init; }
    /// <summary>The channel count (last axis) when the graph says it; attention points: the key length is dynamic.</summary>
    public long? Channels { get; init; }
    /// <summary>Attention points: the number of heads.</summary>
    public int? Heads { get; init; }
    /// <summary>The weights of the linears that read this tensor (q/k/v, gate/up, o, down), for weight-aware analysis.</summary>
    public IReadOnlyList<string> ReadBy { get; init; } = [];
    /// <summary>The graph output carrying each statistic.</summary>
    public required IReadOnlyDictionary<ProbeStatistic, string> Outputs { get; init; }
    /// <summary>How an attention point's probabilities were obtained (<c>softmax</c>, or the side subgraph's description).</summary>
    public string? Source { get; init; }
    /// <summary>The other roles of the same tensor, probed once under <see cref="Id"/> (a post-norm block's norm output is
    /// its <see cref="ProbeKind.Residual"/> and the next block's <see cref="ProbeKind.AttentionInput"/>): id, kind, block, role.</summary>
    public IReadOnlyList<ProbeRoleRef> AlsoAs { get; init; } = [];

    /// <summary>True when this point is <paramref name="kind"/> (of <paramref name="block"/>, when given) itself or through
    /// <see cref="AlsoAs"/>.</summary>
    public bool Is(ProbeKind kind, int? block = null) =>
        (Kind == kind && (block is null || Block == block)) || AlsoAs.Any(a => a.Kind == kind && (block is null || a.Block == block));
}

/// <summary>A role a deduplicated point also plays (see <see cref="ProbePoint.AlsoAs"/>).</summary>
public sealed record ProbeRoleRef(string Id, ProbeKind Kind, int? Block, string Role);

/// <summary>A point the pass wanted but could not probe, with the reason (e.g. attention mass of a GroupQueryAttention
/// that applies rotary inside the op).</summary>
public sealed record SkippedProbe(string Id, ProbeKind Kind, int? Block, string Reason);

/// <summary>What the probe pass did: the points (in graph order: embedding, then per block), what it skipped, and the
/// settings. Written next to a probed model as JSON (<c>probe -o OUT.onnx</c> writes <c>OUT.probes.json</c>).</summary>
public sealed record ProbeManifest
{
    public const int CurrentSchemaVersion = 1;
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;
    /// <summary>The model the probes were placed in (as given).</summary>
    public required string Model { get; init; }
    public required ProbeSettings Settings { get; init; }
    public required IReadOnlyList<ProbePoint> Points { get; init; }
    public IReadOnlyList<SkippedProbe> Skipped { get; init; } = [];
    /// <summary>The graph outputs the original model had (the probed model keeps them first, in order).</summary>
    public required IReadOnlyList<string> OriginalOutputs { get; init; }

    /// <summary>The point probing <paramref name="kind"/> of <paramref name="block"/> (directly or as an alias), or null.</summary>
    public ProbePoint? Find(ProbeKind kind, int? block) => Points.FirstOrDefault(p => p.Is(kind, block));

    /// <summary>The point whose id (or alias id) is <paramref name="id"/>, or null.</summary>
    public ProbePoint? this[string id] => Points.FirstOrDefault(p => p.Id == id) ?? Points.FirstOrDefault(p => p.AlsoAs.Any(a => a.Id == id));
}
