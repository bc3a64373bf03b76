using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>What the fallback saw in a sublayer it could not match in full: the recurrent states it reads and
/// writes, the op types of its core (nested graphs included) and its linears.</summary>
public sealed record MixerFeatures(IReadOnlyList<StateRole> States, IReadOnlySet<string> CoreOps, int InputProjections, bool HasOutputProjection)
{
    public bool Has(StateKind kind) => States.Any(s => s.Kind == kind);
    public bool NamedLike(string part) => States.Any(s =>
        (s.Past?.Name ?? "").Contains(part, StringComparison.OrdinalIgnoreCase) || (s.Present?.Name ?? "").Contains(part, StringComparison.OrdinalIgnoreCase));
}

/// <summary>A token-mixer kind and the evidence that makes a sublayer one: declarative, tried in order, first match wins.</summary>
public sealed record MixerRule(BlockKind Kind, string Name, string Evidence, Func<MixerFeatures, bool> Matches);

/// <summary>Token mixers that are not softmax attention. Their internals stay opaque (Scan bodies, If branches with
/// prefill and decode paths, custom ops); what identifies them is the state they carry between steps and the ops
/// around it:
/// <list type="bullet">
/// <item>Mamba / Mamba-2 (an SSM): a recurrent state named ssm, or the selective-scan ops (Softplus on dt, Exp of A)
/// next to a causal conv;</item>
/// <item>Gated DeltaNet / linear attention (Qwen3-Next, Qwen3.5): a recurrent state matrix per head (<c>past_recurrent.i</c>),
/// updated in a Scan or Loop or in an If's decode branch, usually with a conv state too;</item>
/// <item>LFM2-style short convolution: a conv state (<c>past_conv.i</c>) or a Conv op, and no recurrent state.</item>
/// </list></summary>
public static class MixerRules
{
    private static readonly string[] Recurrences = ["Scan", "Loop"];

    public static IReadOnlyList<MixerRule> All { get; } =
    [
        new(BlockKind.Ssm, "Mixer/SSM", "a recurrent state named 'ssm', or Softplus+Exp (dt, A) selective-scan ops with a state",
            f => f.Has(StateKind.Recurrent) && (f.NamedLike("ssm") || f.CoreOps.Contains("Softplus") && f.CoreOps.Contains("Exp") && !f.NamedLike("recurrent"))),
        new(BlockKind.LinearAttention, "Mixer/LinearAttention", "a recurrent state (past_recurrent.i) updated by Scan/Loop or an If branch",
            f => f.Has(StateKind.Recurrent) && (Recurrences.Any(f.CoreOps.Contains) || f.CoreOps.Contains("If") || f.NamedLike("recurrent"))),
        new(BlockKind.Conv, "Mixer/ShortConv", "a conv state (past_conv.i) or a Conv op, and no recurrent or KV state",
            f => !f.Has(StateKind.Recurrent) && !f.Has(StateKind.Key) && !f.Has(StateKind.Value) && (f.Has(StateKind.Conv) || f.CoreOps.Contains("Conv"))),
    ];

    /// <summary>The first rule that matches, or null (the sublayer stays <see cref="BlockKind.Unknown"/>).</summary>
    public static MixerRule? Classify(MixerFeatures features) => All.FirstOrDefault(r => r.Matches(features));

    /// <summary>The kind of a state from its graph input/output name.</summary>
    public static StateKind StateKindOf(string name)
    {
        // past_key_values.3.key / present.3.value / past_conv.0 / past_recurrent.0 / key_cache.0: the last word decides,
        // then any word (key_values holds both 'key' and 'value').
        var words = name.ToLowerInvariant().Split(['.', '_', '/', '-', ':'], StringSplitOptions.RemoveEmptyEntries).Where(w => !w.All(char.IsDigit)).ToList();
        string last = words.LastOrDefault() ?? "";
        if (last is "key" or "k" or "keys") return StateKind.Key;
        if (last is "value" or "v" or "values") return StateKind.Value;
        if (words.Any(w => w.Contains("conv"))) return StateKind.Conv;
        if (words.Contains("key")) return StateKind.Key;
        if (words.Contains("value")) return StateKind.Value;
        return StateKind.Recurrent;
    }
}
