namespace OnnxOutlierTools.Ir;

/// <summary>The one place that hands out names for new values and nodes, unique across the model
/// (all nested graphs included), so inserted probes and rewrites never collide with existing names.</summary>
public sealed class NameAuthority
{
    private readonly HashSet<string> _valueNames = new(StringComparer.Ordinal);
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _counters = new(StringComparer.Ordinal);

    public static NameAuthority For(Graph graph)
    {
        var names = new NameAuthority();
        foreach (var g in graph.SelfAndSubgraphs())
        {
            foreach (var v in g.Inputs) names._valueNames.Add(v.Name);
            foreach (var v in g.Initializers) names._valueNames.Add(v.Name);
            foreach (var v in g.Outputs) names._valueNames.Add(v.Name);
            foreach (var v in g.OtherValues) names._valueNames.Add(v.Name);
            foreach (var n in g.Nodes)
            {
                if (n.Name.Length > 0) names._nodeNames.Add(n.Name);
                foreach (var o in n.Outputs) if (o is not null) names._valueNames.Add(o.Name);
            }
        }
        return names;
    }

    public bool IsValueNameTaken(string name) => _valueNames.Contains(name);

    public string NewValueName(string hint) => Claim(_valueNames, hint);

    public string NewNodeName(string hint) => Claim(_nodeNames, hint);

    /// <summary>Registers a name chosen elsewhere; false if it was already taken.</summary>
    public bool ReserveValueName(string name) => _valueNames.Add(name);

    private string Claim(HashSet<string> taken, string hint)
    {
        if (string.IsNullOrEmpty(hint)) hint = "v";
        if (taken.Add(hint)) return hint;
        _counters.TryGetValue(hint, out int n);
        string candidate;
        do candidate = $"{hint}_{++n}"; while (!taken.Add(candidate));
        _counters[hint] = n;
        return candidate;
    }
}
