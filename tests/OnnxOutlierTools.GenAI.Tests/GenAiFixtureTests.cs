using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests;
using Xunit.Abstractions;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>The genai builder's own folder (llama-genai-gqa-fp32) runs in onnxruntime-genai 0.20 on the CPU,
/// and genai's greedy tokens are ours (<see cref="KvCacheDecoder"/>, argmax per step, independent code).</summary>
public sealed class GenAiFixtureTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new("genai-fixture");

    [Fact]
    public void BuilderFolder_RunsInGenAi_AndGreedyEqualsOurDecoder()
    {
        string folder = GenAiFolders.CopyGqaFixture(_temp.Folder("gqa"));
        int[] prompt = GenAiGeneration.Encode(folder, "Hello world, this is a test", addSpecialTokens: true);
        Assert.NotEmpty(prompt);

        var genai = GenAiGeneration.Greedy(folder, prompt, 12);
        output.WriteLine(genai.ToString());
        Assert.Equal(12, genai.NewTokens.Length);
        Assert.Equal(OurGreedy.Run(Path.Combine(folder, "model.onnx"), prompt, 12), genai.NewTokens);
    }

    public void Dispose() => _temp.Dispose();
}
