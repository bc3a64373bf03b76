using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>Why a match attempt failed: the reason, the value at fault, and how far the match got
/// (number of pattern nodes matched before it failed) — the tracer ranks near misses by that.</summary>
public sealed record MatchFailure(string Reason, Value? At, int Progress, Value Root)
{
    public override string ToString() => $"after {Progress} matched node(s), at '{At?.Name ?? "?"}': {Reason}";
}

/// <summary>Bindings and matched nodes of one attempt, with cheap backtracking (marks).</summary>
internal sealed class MatchState(Value root)
{
    private readonly List<(string Name, object Item)> _bindings = [];
    private readonly List<Node> _nodes = [];

    public Value Root { get; } = root;
    public MatchFailure? BestFailure { get; private set; }
    public IReadOnlyList<Node> Nodes => _nodes;
    public IReadOnlyList<(string Name, object Item)> Bindings => _bindings;

    public (int Bindings, int Nodes) Mark() => (_bindings.Count, _nodes.Count);

    public void Restore((int Bindings, int Nodes) mark)
    {
        _bindings.RemoveRange(mark.Bindings, _bindings.Count - mark.Bindings);
        _nodes.RemoveRange(mark.Nodes, _nodes.Count - mark.Nodes);
    }

    public void EnterNode(Node node) => _nodes.Add(node);

    public bool Bind(string name, Value value) => BindItem(name, value);
    public bool IsBound(string name) => _bindings.Any(b => b.Name == name);
    public bool BindNode(string name, Node node) => BindItem(name, node);

    private bool BindItem(string name, object item)
    {
        foreach (var (n, existing) in _bindings)
        {
            if (n != name) continue;
            if (ReferenceEquals(existing, item)) return true;
            return Fail($"'{name}' must be the same {(item is Node ? "node" : "value")} everywhere: '{Describe(existing)}' vs '{Describe(item)}'", item as Value);
        }
        _bindings.Add((name, item));
        return true;
    }

    private static string Describe(object item) => item is Node n ? n.Describe() : ((Value)item).Name;

    /// <summary>Records a failure (kept if it got at least as far as the best so far); returns false.</summary>
    public bool Fail(string reason, Value? at)
    {
        if (BestFailure is null || _nodes.Count >= BestFailure.Progress)
            BestFailure = new MatchFailure(reason, at, _nodes.Count, Root);
        return false;
    }
}

/// <summary>A successful match: named bindings (values and nodes) and every node the pattern covered.</summary>
public sealed class Match
{
    private readonly Dictionary<string, object> _bindings;

    internal Match(Value root, IEnumerable<(string Name, object Item)> bindings, IEnumerable<Node> nodes)
    {
        Root = root;
        _bindings = bindings.ToDictionary(b => b.Name, b => b.Item);
        Nodes = nodes.Distinct().ToArray();
    }

    public Value Root { get; }
    public IReadOnlyList<Node> Nodes { get; }

    public Value this[string name] => Value(name);

    public Value Value(string name) => TryValue(name) ?? throw new KeyNotFoundException($"pattern variable '{name}' is not bound to a value");
    public Value? TryValue(string name) => _bindings.TryGetValue(name, out var item) ? item as Value : null;
    public Node Node(string name) => TryNode(name) ?? throw new KeyNotFoundException($"pattern variable '{name}' is not bound to a node");
    public Node? TryNode(string name) => _bindings.TryGetValue(name, out var item) ? item as Node : null;
    public bool Has(string name) => _bindings.ContainsKey(name);
}
