using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Mitigation.Folding;

/// <summary>Where a per-channel scale s can move between an activation X and the linears reading it
/// (SCIENCE.md 2.1-2.2): <c>X W = (X diag(1/s)) (diag(s) W)</c>.</summary>
public enum FoldSiteKind
{
    /// <summary>The attention norm -> q, k, v (or packed qkv): one shared scale.</summary>
    Qkv,
    /// <summary>The FFN norm -> gate and up (GLU).</summary>
    GateUp,
    /// <summary>The FFN norm -> fc1 (MLP).</summary>
    Fc1,
    /// <summary>v_proj's output columns -> o_proj's input rows (per KV group with grouped-query attention).</summary>
    VO,
    /// <summary>up_proj's output columns -> down_proj's input rows (GLU: act(gate) * up is linear in up).</summary>
    UpDown,
}

/// <summary>What a pass does with a site whose scaled tensor has a consumer that cannot absorb the scale (a post-norm
/// residual path, a value cache output) or whose producer cannot take 1/s (Gemma's 1 + gamma gain).</summary>
public enum InexactPolicy
{
    /// <summary>Insert an explicit <c>Mul(X, 1/s)</c> in front of the site's linears only (the producer is unchanged):
    /// still exact, costs one node at run time.</summary>
    Mul,
    /// <summary>Leave the site alone and report why.</summary>
    Skip,
}

public enum FoldOutcome { Exact, MulInserted, Skipped }

/// <summary>What a pass did at one site: folded exactly, through an inserted Mul, or skipped (with the reason); the range
/// of the scale it applied (NaN when skipped).</summary>
public sealed record FoldSiteOutcome(string SiteId, FoldSiteKind Kind, FoldOutcome Outcome, string? Reason, double ScaleMin, double ScaleMax);

/// <summary>The side of a site that absorbs 1/s: a norm (gain and bias scaled) or a linear's output columns
/// [<see cref="ColumnOffset"/>, <see cref="ColumnOffset"/> + n) and bias (v inside a packed QKV is its tail).</summary>
public sealed record FoldProducer
{
    public NormRole? Norm { get; init; }
    public LinearRole? Linear { get; init; }
    public long ColumnOffset { get; init; }

    public override string ToString() => Norm is { } n ? $"{n.Form.Name()} {n.Gain.Name}" : $"{Linear} columns from {ColumnOffset}";
}

/// <summary>One folding site of a recognized model (<see cref="FoldSites.Discover"/>).</summary>
public sealed record FoldSite
{
    /// <summary><c>block{i}.qkv</c>, <c>block{i}.gate-up</c>, <c>block{i}.fc1</c>, <c>block{i}.v-o</c>, <c>block{i}.up-down</c>.</summary>
    public required string Id { get; init; }
    public required FoldSiteKind Kind { get; init; }
    public required int Block { get; init; }
    /// <summary>X: the tensor the consumers read, whose channels are scaled by 1/s.</summary>
    public required Value Tensor { get; init; }
    /// <summary>Channels of X (the consumers' input features).</summary>
    public required int Channels { get; init; }
    /// <summary>The side absorbing 1/s; null when none can (only an explicit Mul is possible then).</summary>
    public FoldProducer? Producer { get; init; }
    /// <summary>The norm whose output X is (norm sites), absorbing or not (a post-norm residual, Gemma's 1 + gamma); null
    /// for the v-o and up-down sites or when no norm makes X.</summary>
    public NormRole? Norm { get; init; }
    /// <summary>The linears whose input rows absorb s.</summary>
    public required IReadOnlyList<LinearRole> Consumers { get; init; }
    /// <summary>Channel c of X takes the scale of group <c>Groups[c]</c>; null: every channel is its own group. With grouped
    /// KV heads o_proj's input channel h*D+d shares the scale of KV head h/(H/KV) channel d.</summary>
    public IReadOnlyList<int>? Groups { get; init; }
    /// <summary>Free scale parameters (the producer's channels): <see cref="Channels"/> unless <see cref="Groups"/> ties them.</summary>
    public required int GroupCount { get; init; }
    /// <summary>Why a plain fold would not be exact (the policy decides: Mul or skip); null when it is.</summary>
    public string? InexactReason { get; init; }
    /// <summary>Why the site cannot be folded at all, whatever the policy; null when it can.</summary>
    public string? Unsupported { get; init; }
    /// <summary>The probe point whose statistics are X's (<c>block{i}.attention-input</c>, ...).</summary>
    public required string ProbePoint { get; init; }

    public bool Exact => InexactReason is null && Unsupported is null;

    /// <summary>The consumers' weights (their input-channel axis).</summary>
    internal IReadOnlyList<FoldSlot> ConsumerSlots { get; init; } = [];
    /// <summary>Where each consumer reads X (for an inserted Mul).</summary>
    internal IReadOnlyList<FoldSlot> InputSlots { get; init; } = [];
    /// <summary>The producer's constants along its channel axis (gain and bias; weight columns and bias).</summary>
    internal IReadOnlyList<FoldSlot> ProducerSlots { get; init; } = [];
    /// <summary>Where <see cref="Norm"/> reads its gain (null when it is not a plain constant input).</summary>
    internal FoldSlot? GainSlot { get; init; }

    /// <summary>Scale of X's channel <paramref name="channel"/> from the per-group scale.</summary>
    public double ChannelScale(IReadOnlyList<double> groupScale, int channel) => groupScale[Groups is null ? channel : Groups[channel]];

    public override string ToString() => $"{Id} ({Consumers.Count} linears, {Channels} channels{(Exact ? "" : ", " + (Unsupported ?? InexactReason))})";
}

/// <summary>A fold that must not happen: a site's linear holds quantized weights (the scale would have to be requantized).
/// The CLI maps it to exit code 2. Thrown by the pass constructors, before anything is edited.</summary>
public sealed class FoldRefusedException(string message) : Exception(message);

/// <summary>The names the passes, the CLI (<c>--sites</c>) and the reports use for site kinds (also the passes' rule names).</summary>
public static class FoldSiteKinds
{
    public static IReadOnlyList<FoldSiteKind> All { get; } = Enum.GetValues<FoldSiteKind>();

    /// <summary>The SmoothQuant reference's sites: the norm sites only.</summary>
    public static IReadOnlyList<FoldSiteKind> NormSites { get; } = [FoldSiteKind.Qkv, FoldSiteKind.GateUp, FoldSiteKind.Fc1];

    public static string Name(this FoldSiteKind kind) => kind switch
    {
        FoldSiteKind.Qkv => "qkv",
        FoldSiteKind.GateUp => "gate-up",
        FoldSiteKind.Fc1 => "fc1",
        FoldSiteKind.VO => "v-o",
        FoldSiteKind.UpDown => "up-down",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>"qkv,gate-up,..." to kinds; an unknown name throws an <see cref="ArgumentException"/> listing the valid ones.</summary>
    public static IReadOnlyList<FoldSiteKind> Parse(string list)
    {
        ArgumentNullException.ThrowIfNull(list);
        var kinds = new List<FoldSiteKind>();
        foreach (string part in list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var kind = All.Where(k => k.Name() == part).Select(k => (FoldSiteKind?)k).FirstOrDefault()
                ?? throw new ArgumentException($"unknown fold site '{part}' (sites: {string.Join(", ", All.Select(k => k.Name()))})", nameof(list));
            if (!kinds.Contains(kind)) kinds.Add(kind);
        }
        if (kinds.Count == 0) throw new ArgumentException("no fold site named", nameof(list));
        return kinds;
    }

    internal static string ProbeKindName(this FoldSiteKind kind) => kind switch
    {
        FoldSiteKind.Qkv => "attention-input",
        FoldSiteKind.GateUp or FoldSiteKind.Fc1 => "ffn-input",
        FoldSiteKind.VO => "o-input",
        _ => "down-input",
    };
}
