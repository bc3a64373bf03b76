using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>The committed onnx-models/tiny-llama (tools/ModelGen tiny-llama) is what the generator describes.</summary>
public class TinyLlamaFolderTests(ITestOutputHelper output)
{
    private static string Folder
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln")))
                    return Path.Combine(dir.FullName, "onnx-models", "tiny-llama");
            throw new InvalidOperationException("repository root (OnnxOutlierTools.sln) not found");
        }
    }

    [Fact]
    public void TinyLlama_Committed_MatchesGeneratorAndReference()
    {
        string path = Path.Combine(Folder, "model.onnx");
        long bytes = Directory.GetFiles(Folder).Sum(f => new FileInfo(f).Length);
        Assert.True(bytes < 1 << 20, $"onnx-models/tiny-llama holds {bytes} bytes");
        Assert.True(File.Exists(Path.Combine(Folder, "model.onnx.data")));

        var weights = SyntheticDecoder.Create(SyntheticDecoder.TinyConfig, SyntheticDecoder.TinySeed);
        int[] tokens = [1, 17, 200, 3, 99, 42, 42, 7, 255, 0, 128];
        var reference = Llama2cReference.Forward(weights, tokens);
        using var ort = new KvCacheDecoder(path);
        double diff = Diff.MaxAbs(reference, ort.Run(tokens).Logits);
        output.WriteLine($"onnx-models/tiny-llama vs float64 reference: max |diff| = {diff:E3}");
        Assert.True(diff <= 1e-4, $"max |diff| {diff}; regenerate with: dotnet run --project tools/ModelGen -- tiny-llama onnx-models/tiny-llama");

        using var model = ModelReader.Load(path);
        Assert.Equal(["input_ids", "attention_mask", "position_ids"], model.Graph.Inputs.Select(v => v.Name));
        Assert.Equal(["logits"], model.Graph.Outputs.Select(v => v.Name));
    }
}
