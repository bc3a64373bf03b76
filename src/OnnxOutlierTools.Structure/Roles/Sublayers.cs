using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Roles;

/// <summary>What mixes tokens in a block: softmax attention (an <see cref="AttentionRole"/>), or a token mixer
/// without softmax recognized from its recurrent state and core ops (its internals stay opaque), or
/// <see cref="Unknown"/> when only the residual stream around it was found.</summary>
public enum BlockKind
{
    Attention,
    /// <summary>Gated DeltaNet / linear attention: a recurrent state matrix per head (Scan, or an If with
    /// prefill/decode branches), usually after a short causal convolution.</summary>
    LinearAttention,
    /// <summary>Mamba-style selective state space model: a per-channel state, input-dependent discretization.</summary>
    Ssm,
    /// <summary>LFM2-style gated short convolution: a causal depthwise Conv with a conv-state cache, no recurrent state.</summary>
    Conv,
    /// <summary>A sublayer no rule knows: reported from the residual stream with its norms and linears.</summary>
    Unknown,
}

/// <summary>A recurrent state a token mixer carries between decoding steps.</summary>
public enum StateKind
{
    /// <summary>The last inputs of a causal convolution (<c>past_conv.i</c> / <c>conv_state</c>).</summary>
    Conv,
    /// <summary>A linear-attention state matrix (<c>past_recurrent.i</c>) or an SSM state (<c>ssm_state</c>).</summary>
    Recurrent,
    /// <summary>An attention KV cache met inside a sublayer no attention rule matched.</summary>
    Key,
    Value,
}

/// <summary>One recurrent state: the graph input it is read from and the graph output the updated state goes to.</summary>
public sealed record StateRole(StateKind Kind, Value? Past, Value? Present);

/// <summary>One core op of an opaque sublayer: its op type (<see cref="Domain"/> null for the default domain) and the
/// notable ops inside its subgraphs (Scan, Loop, Conv, custom ops), sorted.</summary>
public sealed record CoreOp(string? Domain, string OpType, IReadOnlyList<string> Inner)
{
    public static CoreOp Of(Node n) => new(n.IsDefaultDomain ? null : n.Domain, n.OpType,
        n.Subgraphs.SelectMany(g => g.SelfAndSubgraphs()).SelectMany(g => g.Nodes)
            .Where(x => x.Is("Scan") || x.Is("Loop") || x.Is("Conv") || !x.IsDefaultDomain).Select(x => x.OpType).Distinct().Order().ToList());

    /// <summary>"Scan", "If(Conv,Scan)", "aten::foo".</summary>
    public override string ToString()
    {
        string op = Domain is null ? OpType : $"{Domain}::{OpType}";
        return Inner.Count == 0 ? op : $"{op}({string.Join(",", Inner)})";
    }
}

/// <summary>The form of an opaque sublayer: its distinct core ops (an open set: the sublayer is one no rule understood,
/// so an enum cannot name it). <see cref="ToString"/> is the text the reports print ("If(Scan)+Conv", "no core op").</summary>
public sealed record SublayerForm(IReadOnlyList<CoreOp> CoreOps)
{
    /// <summary>The distinct core ops of <paramref name="core"/>, in order.</summary>
    public static SublayerForm Of(IEnumerable<Node> core) => new(core.Select(CoreOp.Of).DistinctBy(c => c.ToString()).ToList());

    public override string ToString() => CoreOps.Count == 0 ? "no core op" : string.Join("+", CoreOps);
}

/// <summary>The linears that read one tensor (a norm's output, or the stream itself): the granularity a probe or a
/// norm fold needs, even when what the linears feed is not understood.</summary>
public sealed record LinearGroup(Value Reads, NormRole? Norm, IReadOnlyList<LinearRole> Linears);

/// <summary>A sublayer found from the residual stream whose internals no rule matched in full (a linear-attention,
/// SSM or convolution mixer, or something unknown): the tensor it reads, the linears grouped by what they read,
/// the linear whose output rejoins the stream, its recurrent states and the ops that make its core.
/// <see cref="NotUnderstood"/> says, for <c>--explain</c>, what was not recognized.</summary>
public sealed record OpaqueSublayer
{
    public required BlockKind Kind { get; init; }
    /// <summary>The core ops ("If(Scan)", "Conv", "aten::foo").</summary>
    public required SublayerForm Form { get; init; }
    /// <summary>The sublayer's input: the norm output (pre-norm) or the stream.</summary>
    public required Value Input { get; init; }
    /// <summary>What the sublayer adds to the residual stream.</summary>
    public required Value Output { get; init; }
    /// <summary>Input-side linears, grouped by the tensor they read (first group: the sublayer input).</summary>
    public required IReadOnlyList<LinearGroup> InputProjections { get; init; }
    /// <summary>The linear whose output is <see cref="Output"/> (up to layout ops), when there is one.</summary>
    public LinearRole? OutputProjection { get; init; }
    /// <summary>Norms inside the sublayer (gated RMSNorm of a DeltaNet, q/k norms of an unknown mixer).</summary>
    public IReadOnlyList<NormRole> InnerNorms { get; init; } = [];
    public IReadOnlyList<StateRole> States { get; init; } = [];
    /// <summary>The ops that make the mixer a mixer (Scan, If, Conv, custom ops), for reports.</summary>
    public IReadOnlyList<Node> CoreNodes { get; init; } = [];
    public IReadOnlyList<string> NotUnderstood { get; init; } = [];

    /// <summary>Every linear of the sublayer, input projections first.</summary>
    public IEnumerable<LinearRole> Linears =>
        InputProjections.SelectMany(g => g.Linears).Concat(OutputProjection is { } o && !InputProjections.Any(g => g.Linears.Contains(o)) ? [o] : []);
}
