using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Structure.Patterns;

/// <summary>Runs rules against a graph. Each rule is tried at every value whose producer has one of the
/// pattern's root op types; failures are kept so a tracer can report each rule's best near miss.</summary>
public sealed class Matcher
{
    private readonly Dictionary<string, List<Node>> _byOp = new(StringComparer.Ordinal);
    private readonly List<Node> _all;
    private readonly Dictionary<Node, int> _position = [];
    private readonly Dictionary<string, MatchFailure> _nearMisses = [];
    private readonly Dictionary<string, int> _matchCounts = [];

    public Matcher(Graph graph)
    {
        Graph = graph;
        _all = graph.Nodes.ToList();
        foreach (var node in _all)
        {
            _position[node] = _position.Count;
            if (!_byOp.TryGetValue(node.OpType, out var list)) _byOp[node.OpType] = list = [];
            list.Add(node);
        }
    }

    public Graph Graph { get; }

    /// <summary>Per rule name: the failed attempt that got furthest (the near miss).</summary>
    public IReadOnlyDictionary<string, MatchFailure> NearMisses => _nearMisses;

    /// <summary>Per rule name: how many matches it produced.</summary>
    public IReadOnlyDictionary<string, int> MatchCounts => _matchCounts;

    /// <summary>Tries <paramref name="rule"/> rooted at one value.</summary>
    public Match? TryMatch(IRule rule, Value root)
    {
        var state = new MatchState(root);
        Match? result = null;
        if (rule.Pattern.Match(root, state))
        {
            var match = new Match(root, state.Bindings, state.Nodes);
            var escape = rule.AllowEscapes ? null : FindEscape(match);
            var check = escape is null ? rule.Verify(match) : Check.Fail(escape.Value.Reason, escape.Value.At);
            if (check.Ok) result = match;
            else Record(rule.Name, new MatchFailure(check.Reason ?? "check failed", check.At ?? root, match.Nodes.Count, root));
        }
        else if (state.BestFailure is { } failure) Record(rule.Name, failure);
        _matchCounts[rule.Name] = _matchCounts.GetValueOrDefault(rule.Name) + (result is null ? 0 : 1);
        return result;
    }

    /// <summary>All matches of a rule in the graph, in node order.</summary>
    public IEnumerable<Match> MatchAll(IRule rule)
    {
        var roots = rule.Pattern.RootOps;
        IEnumerable<Node> candidates = roots is null ? _all : roots.SelectMany(op => _byOp.GetValueOrDefault(op) ?? []).Distinct().OrderBy(n => _position[n]);
        foreach (var node in candidates)
            foreach (var output in node.Outputs)
                if (output is not null && TryMatch(rule, output) is { } match)
                    yield return match;
    }

    public IEnumerable<(Match Match, T Result)> Apply<T>(Rule<T> rule) => MatchAll(rule).Select(m => (m, rule.Build(m)));

    /// <summary>Runs several variant rules; the first variant that matches at a root wins.</summary>
    public List<T> ApplyFirst<T>(IEnumerable<Rule<T>> rules)
    {
        var taken = new HashSet<Value>();
        var results = new List<T>();
        foreach (var rule in rules)
            foreach (var match in MatchAll(rule))
                if (taken.Add(match.Root)) results.Add(rule.Build(match));
        return results;
    }

    /// <summary>A value produced inside the match (not the root) that is used outside it.</summary>
    private static (string Reason, Value At)? FindEscape(Match match)
    {
        var inside = match.Nodes.ToHashSet();
        foreach (var node in match.Nodes)
            foreach (var output in node.Outputs)
            {
                // The root node's own outputs are the match's results, not inner values (a skip norm's sum output).
                if (output is null || ReferenceEquals(node, match.Root.Producer)) continue;
                foreach (var use in output.Uses)
                    if (use.Node is null || !inside.Contains(use.Node))
                        return ($"inner value '{output.Name}' is also used outside the match ({use})", output);
            }
        return null;
    }

    private void Record(string rule, MatchFailure failure)
    {
        if (!_nearMisses.TryGetValue(rule, out var best) || failure.Progress > best.Progress) _nearMisses[rule] = failure;
    }
}
