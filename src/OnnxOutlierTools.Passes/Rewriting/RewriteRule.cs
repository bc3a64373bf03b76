using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes.Rewriting;

/// <summary>A rewrite rule: pattern, check and replacement declared together. The pattern and its
/// matcher are the Structure layer's (recognition rules share them); applying the replacement is a pass's
/// job (<see cref="RewritePass"/>). Variants are separate instances built by a factory method.</summary>
public sealed class RewriteRule : IRule
{
    private readonly Func<Match, Check>? _check;
    private readonly Func<Match, RewriteContext, Value> _rewrite;

    public RewriteRule(string name, Pattern pattern, Func<Match, Check>? check, Func<Match, RewriteContext, Value> rewrite)
    {
        PassNames.Check(name, nameof(name));
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(rewrite);
        Name = name;
        Pattern = pattern;
        _check = check;
        _rewrite = rewrite;
    }

    public string Name { get; }
    public Pattern Pattern { get; }

    /// <summary>Always false: a match whose inner values are used outside it is refused, since removing
    /// the matched nodes would leave those uses dangling.</summary>
    public bool AllowEscapes => false;

    public Check Verify(Match match) => _check?.Invoke(match) ?? Check.Pass;
    internal Value Rewrite(Match match, RewriteContext context) => _rewrite(match, context);
    public override string ToString() => Name;
}

/// <summary>Builds the replacement for one match. Nodes it adds go before the matched root's producer
/// and carry their provenance (pass and rule).</summary>
public sealed class RewriteContext
{
    internal RewriteContext(Graph graph, NameAuthority names, Node anchor, string passName, string ruleName)
    {
        Graph = graph;
        Names = names;
        Anchor = anchor;
        PassName = passName;
        RuleName = ruleName;
    }

    public Graph Graph { get; }
    public NameAuthority Names { get; }
    public Node Anchor { get; }
    public string PassName { get; }
    public string RuleName { get; }

    /// <summary>Adds a node computing <paramref name="opType"/> over <paramref name="inputs"/>; returns its first output.</summary>
    public Value Add(string opType, IEnumerable<Value?> inputs, IEnumerable<Attr>? attributes = null, string domain = "", string? hint = null)
    {
        string name = Names.NewNodeName($"{RuleName}/{opType}");
        var node = new Node(domain, opType, inputs, [Names.NewValueName(hint ?? name + "_output")], attributes, name)
        {
            DocString = $"onnx-outliers: inserted by rule {RuleName}",
        };
        Graph.InsertBefore(Anchor, node);
        return node.Outputs[0]!;
    }

    public Value Initializer(string hint, Tensor tensor) => Graph.AddInitializer(Names.NewValueName(hint), tensor);
}
