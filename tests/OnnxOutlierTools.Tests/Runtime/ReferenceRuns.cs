using System.Collections.Concurrent;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Runtime;

/// <summary>ORT runs of the unmodified fixtures (CPU, graph optimizations disabled, one thread), computed
/// once per test run and shared: the reference every saved or rewritten copy must reproduce.</summary>
public static class ReferenceRuns
{
    private static readonly ConcurrentDictionary<string, Lazy<(IReadOnlyList<TensorData> Inputs, IReadOnlyList<TensorData> Outputs)>> Cache = new();

    public static (IReadOnlyList<TensorData> Inputs, IReadOnlyList<TensorData> Outputs) Original(string fixture) =>
        Cache.GetOrAdd(fixture, name => new Lazy<(IReadOnlyList<TensorData>, IReadOnlyList<TensorData>)>(() =>
        {
            var recipe = FixtureRecipes.Get(name);
            return ModelRunner.RunSynthesized(recipe.ModelPath, recipe.Inputs, SessionSettings.CpuUnoptimized);
        })).Value;

    /// <summary>Runs <paramref name="modelPath"/> on the fixture's reference inputs and compares with the reference outputs.</summary>
    public static OutputComparison CompareWithOriginal(string fixture, string modelPath)
    {
        var (inputs, expected) = Original(fixture);
        var actual = ModelRunner.Run(modelPath, inputs, SessionSettings.CpuUnoptimized);
        return TensorComparison.Compare(expected, actual);
    }
}
