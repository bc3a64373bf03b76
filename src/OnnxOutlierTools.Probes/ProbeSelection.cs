namespace OnnxOutlierTools.Probes;

/// <summary>What <c>--probe</c> names: comma-separated words, each a group of <see cref="ProbeGroups.ByName"/>
/// (<c>residual</c>, <c>linear-inputs</c>, <c>attention-input</c>, <c>o-input</c>, <c>ffn-input</c>, <c>down-input</c>,
/// <c>attention</c>, <c>all</c>), a kind's rule name (<c>embedding</c>, <c>residual-sum</c>, ...), or else a tensor name.
/// Only tensors named: only those are probed. Nothing named: every kind.</summary>
public static class ProbeSelection
{
    public static ProbeSettings Apply(ProbeSettings settings, IEnumerable<string> words)
    {
        var kinds = new List<ProbeKind>();
        var tensors = new List<string>();
        bool any = false;
        foreach (string word in words.SelectMany(w => w.Split(',')).Select(w => w.Trim()).Where(w => w.Length > 0))
        {
            any = true;
            if (ProbeGroups.ByName.TryGetValue(word, out var group)) kinds.AddRange(group);
            else if (Enum.GetValues<ProbeKind>().FirstOrDefault(k => k != ProbeKind.Tensor && k.Rule() == word) is var kind && kind.Rule() == word) kinds.Add(kind);
            else tensors.Add(word);
        }
        if (!any) return settings;
        return settings with { Kinds = kinds.Distinct().ToArray(), Tensors = tensors.Distinct(StringComparer.Ordinal).ToArray() };
    }

    /// <summary>The words that name kinds, for help and error text.</summary>
    public static IEnumerable<string> KindWords =>
        ProbeGroups.ByName.Keys.Concat(Enum.GetValues<ProbeKind>().Where(k => k != ProbeKind.Tensor).Select(k => k.Rule())).Distinct();
}
