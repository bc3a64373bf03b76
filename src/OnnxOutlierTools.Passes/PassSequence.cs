namespace OnnxOutlierTools.Passes;

/// <summary>Passes run in a fixed order, then, when any of them changed the model, the cleanup passes in
/// one fixed order (by default: dead nodes, unused initializers, topological sort and check), so rules
/// may leave dead nodes behind. An unchanged model is not touched by the cleanup. A failure, in a pass
/// or in the cleanup, is a <see cref="PassException"/> naming that pass.</summary>
public sealed class PassSequence : Pass
{
    public PassSequence(string name, IEnumerable<Pass> passes, IEnumerable<Pass>? cleanup = null) : base(name)
    {
        ArgumentNullException.ThrowIfNull(passes);
        Passes = passes.ToArray();
        if (Passes.Count == 0) throw new ArgumentException($"sequence '{name}' has no passes", nameof(passes));
        if (Passes.Any(p => p is null)) throw new ArgumentException($"sequence '{name}' holds a null pass", nameof(passes));
        Cleanup = cleanup?.ToArray() ?? DefaultCleanup();
        if (Cleanup.Any(p => p is null)) throw new ArgumentException($"sequence '{name}' holds a null cleanup pass", nameof(cleanup));
    }

    public PassSequence(string name, params Pass[] passes) : this(name, (IEnumerable<Pass>)passes) { }

    public IReadOnlyList<Pass> Passes { get; }
    public IReadOnlyList<Pass> Cleanup { get; }

    /// <summary>The fixed cleanup order: dead nodes first (they hold initializers), then unused initializers,
    /// then the stable topological sort, which also fails on a node reading a removed node's output.</summary>
    public static IReadOnlyList<Pass> DefaultCleanup() => [new DeadNodeElimination(), new UnusedInitializerRemoval(), new TopologicalSort()];

    protected override PassResult Execute(PassContext context)
    {
        var steps = new List<PassResult>();
        int total = Passes.Count + Cleanup.Count;
        foreach (var pass in Passes)
        {
            context.Progress?.Report(new PassProgress(Name, steps.Count + 1, total, null));
            steps.Add(pass.Run(context));
            if (context.Options.CheckAfterEachPass && GraphCheck.FindProblem(context.Model.Graph) is { } problem)
                throw new PassException(pass.Name, $"left the model invalid: {problem}");
        }
        if (steps.Any(s => s.Changed))
            foreach (var pass in Cleanup)
            {
                context.Progress?.Report(new PassProgress(Name, steps.Count + 1, total, null));
                steps.Add(pass.Run(context));
            }
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var step in steps)
            foreach (var (rule, n) in step.Counts)
                counts[$"{step.Pass}/{rule}"] = counts.GetValueOrDefault($"{step.Pass}/{rule}") + n;
        return new PassResult(Name, steps.Any(s => s.Changed), counts, steps.SelectMany(s => s.Skipped).ToArray()) { Steps = steps };
    }
}
