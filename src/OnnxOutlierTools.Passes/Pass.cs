using System.Diagnostics;
using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Passes;

/// <summary>A pass definition: immutable, its options checked at construction, with one entry point,
/// <see cref="Run"/>, that edits the context's model in place and says what it did. Any exception a
/// pass throws reaches the caller as a <see cref="PassException"/> naming the pass.</summary>
public abstract class Pass
{
    protected Pass(string name)
    {
        PassNames.Check(name, nameof(name));
        Name = name;
    }

    /// <summary>The pass name (lower-case words joined by '-'), used in results, errors and provenance.</summary>
    public string Name { get; }

    /// <summary>Runs the pass on <paramref name="context"/>'s model.</summary>
    public PassResult Run(PassContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Cancellation.ThrowIfCancellationRequested();
        var clock = Stopwatch.StartNew();
        PassResult result;
        try
        {
            result = Execute(context);
        }
        catch (Exception e) when (e is not PassException and not OperationCanceledException)
        {
            throw new PassException(Name, e.Message, e);
        }
        context.Logger.Log(PassLogLevel.Debug, Name, result.Changed ? $"changed the model: {result.Summary()}" : "no change");
        return result with { Elapsed = clock.Elapsed };
    }

    /// <summary>The pass itself. Implementations return <see cref="PassRecorder.ToResult"/> or a result they build.</summary>
    protected abstract PassResult Execute(PassContext context);

    public override string ToString() => Name;
}

/// <summary>A pass that works graph by graph. By default it visits every graph of the model: the main
/// graph and those nested in node attributes (If branches, Loop and Scan bodies, BeamSearch encoders
/// and decoders), innermost first, so that what a nested graph stops using is already free when the
/// graph holding it is visited. A graph whose holder an earlier visit removed is not visited.</summary>
public abstract class GraphPass : Pass
{
    protected GraphPass(string name, GraphScope scope = GraphScope.AllGraphs, IEnumerable<string>? rules = null) : base(name)
    {
        if (!Enum.IsDefined(scope)) throw new ArgumentOutOfRangeException(nameof(scope), scope, "unknown graph scope");
        Scope = scope;
        var list = (rules ?? [name]).ToList();
        foreach (string rule in list) PassNames.Check(rule, nameof(rules));
        if (list.Count == 0) throw new ArgumentException("a pass counts at least one rule", nameof(rules));
        if (list.Distinct(StringComparer.Ordinal).Count() != list.Count) throw new ArgumentException($"rule names repeat in pass '{name}'", nameof(rules));
        Rules = list;
    }

    public GraphScope Scope { get; }

    /// <summary>The rules the pass counts (every one appears in the result's counts, zero or not).</summary>
    public IReadOnlyList<string> Rules { get; }

    protected sealed override PassResult Execute(PassContext context)
    {
        var recorder = new PassRecorder(Rules);
        var main = context.Model.Graph;
        var graphs = Scope == GraphScope.MainGraphOnly || !context.Options.NestedGraphs
            ? [main]
            : main.SelfAndSubgraphs().Reverse().ToList();
        for (int i = 0; i < graphs.Count; i++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var graph = graphs[i];
            if (!IsAttached(graph, main)) continue;
            context.Progress?.Report(new PassProgress(Name, i + 1, graphs.Count, graph.Name));
            RunOnGraph(graph, context, recorder);
        }
        return recorder.ToResult(Name);
    }

    /// <summary>Edits one graph; records counts and skipped sites in <paramref name="recorder"/>.</summary>
    protected abstract void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder);

    private static bool IsAttached(Graph graph, Graph main)
    {
        var g = graph;
        while (!ReferenceEquals(g, main))
        {
            if (g.ParentNode?.Graph is not { } holder) return false;
            g = holder;
        }
        return true;
    }
}

/// <summary>Which graphs a <see cref="GraphPass"/> visits.</summary>
public enum GraphScope
{
    /// <summary>The main graph and every nested graph (the default).</summary>
    AllGraphs,
    /// <summary>The main graph only.</summary>
    MainGraphOnly,
}

/// <summary>Options of one run (not of a pass: those are the pass's constructor arguments).</summary>
public sealed record PassOptions
{
    public static PassOptions Default { get; } = new();

    /// <summary>False restricts every graph pass to the main graph (default true).</summary>
    public bool NestedGraphs { get; init; } = true;

    /// <summary>A sequence checks the model after each pass (every input defined before its use, nothing
    /// read from a removed node) and names the first pass that broke it. Off by default: it costs a walk
    /// over the whole model per pass.</summary>
    public bool CheckAfterEachPass { get; init; }
}

public enum PassLogLevel
{
    Debug,
    Info,
    Warning,
}

/// <summary>Where passes write what they do (the CLI forwards it to stderr under --verbose, tests collect it).</summary>
public interface IPassLogger
{
    void Log(PassLogLevel level, string pass, string message);
}

/// <summary>A logger that drops everything.</summary>
public sealed class NullPassLogger : IPassLogger
{
    public static NullPassLogger Instance { get; } = new();
    public void Log(PassLogLevel level, string pass, string message) { }
}

/// <summary>Progress of a run: step <see cref="Step"/> of <see cref="Steps"/> (a graph of a graph pass, a pass of a sequence).</summary>
public sealed record PassProgress(string Pass, int Step, int Steps, string? Graph);

/// <summary>What a pass runs on: the model (edited in place), the run's options, a logger and progress sink.</summary>
public sealed class PassContext
{
    public PassContext(Model model, PassOptions? options = null, IPassLogger? logger = null,
        IProgress<PassProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Options = options ?? PassOptions.Default;
        Logger = logger ?? NullPassLogger.Instance;
        Progress = progress;
        Cancellation = cancellation;
    }

    public Model Model { get; }
    public PassOptions Options { get; }
    public IPassLogger Logger { get; }
    public IProgress<PassProgress>? Progress { get; }
    public CancellationToken Cancellation { get; }

    /// <summary>The model's name authority: every name a pass gives a new node or value comes from here.</summary>
    public NameAuthority Names => Model.Names;
}

/// <summary>A site a rule looked at and left alone, with the reason (a failed check is data).</summary>
/// <param name="Rule">The rule that skipped it.</param>
/// <param name="Reason">Why, in a sentence fragment ("initializer is also a graph input").</param>
/// <param name="Graph">The graph holding the site.</param>
/// <param name="At">The node (as <see cref="Node.Describe"/> writes it) or value name at fault.</param>
public sealed record SkippedSite(string Rule, string Reason, string Graph, string? At)
{
    public override string ToString() => At is null ? $"{Rule}: {Reason} (graph '{Graph}')" : $"{Rule}: {At}: {Reason} (graph '{Graph}')";
}

/// <summary>What a pass did: whether it changed the model, how often each rule applied, the sites it
/// skipped and why; for a sequence, the result of each step (passes, then cleanup) in order.</summary>
public sealed record PassResult(string Pass, bool Changed, IReadOnlyDictionary<string, int> Counts, IReadOnlyList<SkippedSite> Skipped)
{
    public IReadOnlyList<PassResult> Steps { get; init; } = [];
    public TimeSpan Elapsed { get; init; }

    public int Count(string rule) => Counts.GetValueOrDefault(rule);

    /// <summary>"rule=n, ..." over the rules that applied, for logs.</summary>
    public string Summary() => string.Join(", ", Counts.Where(c => c.Value > 0).Select(c => $"{c.Key}={c.Value}"));

    public override string ToString() => $"{Pass}: {(Changed ? Summary() : "no change")}" + (Skipped.Count > 0 ? $", {Skipped.Count} skipped" : "");
}

/// <summary>Collects a graph pass's counts and skipped sites while it runs.</summary>
public sealed class PassRecorder
{
    private readonly Dictionary<string, int> _counts;
    private readonly List<SkippedSite> _skipped = [];
    private bool _changed;

    internal PassRecorder(IEnumerable<string> rules) => _counts = rules.ToDictionary(r => r, _ => 0, StringComparer.Ordinal);

    /// <summary>Counts <paramref name="times"/> applications of <paramref name="rule"/> (a change to the model).</summary>
    public void Count(string rule, int times = 1)
    {
        if (!_counts.ContainsKey(rule)) throw new ArgumentException($"rule '{rule}' is not declared by the pass", nameof(rule));
        ArgumentOutOfRangeException.ThrowIfNegative(times);
        _counts[rule] += times;
        if (times > 0) _changed = true;
    }

    /// <summary>Marks the model changed without counting a rule (a reorder, a rename).</summary>
    public void MarkChanged() => _changed = true;

    public void Skip(string rule, string reason, Graph graph, string? at = null) => _skipped.Add(new SkippedSite(rule, reason, graph.Name, at));

    public PassResult ToResult(string pass) => new(pass, _changed, new Dictionary<string, int>(_counts, StringComparer.Ordinal), _skipped.ToArray());
}

/// <summary>A pass failed: <see cref="PassName"/> names it (for a sequence, the innermost pass that threw).</summary>
public sealed class PassException : Exception
{
    public PassException(string passName, string message, Exception? inner = null) : base($"pass '{passName}' failed: {message}", inner)
    {
        PassName = passName;
    }

    public string PassName { get; }
}

/// <summary><c>model.Apply(new DeadNodeElimination())</c>.</summary>
public static class ModelPassExtensions
{
    public static PassResult Apply(this Model model, Pass pass, PassOptions? options = null, IPassLogger? logger = null) =>
        pass.Run(new PassContext(model, options, logger));
}

internal static class PassNames
{
    /// <summary>Pass and rule names: lower-case letters, digits, '-' and '.', starting with a letter.</summary>
    public static void Check(string name, string parameter)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("a pass or rule name must not be empty", parameter);
        if (!char.IsAsciiLetterLower(name[0]) || !name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.'))
            throw new ArgumentException($"pass or rule name '{name}' must be lower-case letters, digits, '-' or '.', starting with a letter", parameter);
    }
}
