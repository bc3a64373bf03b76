using Mono.Unix.Native;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The folder around a model is read once, in the I/O layer: HF config (with a multimodal
/// text_config), genai_config (model + decoder), tokenizer files; malformed or special files are
/// reported, never read blindly.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // FIFOs and links
public sealed class ModelFolderFactsTests : IDisposable
{
    private readonly TempFolder _temp = new("folder-facts");

    [Fact]
    public void GenAiFolder_GivesTheDecoderFactsAndTheBosId()
    {
        var facts = ModelFolderFacts.Read(Fixtures.Path("exports", "llama-genai-gqa-fp32"));
        var genai = facts.GenAiConfig!;
        Assert.Null(genai.Problem);
        Assert.Equal("llama", genai.ModelType);
        Assert.Equal(2, genai.LayerCount); // from model.decoder
        Assert.Equal((0, "genai_config.json"), facts.BosTokenId);
        Assert.Contains("tokenizer.json", facts.TokenizerFiles);
    }

    [Fact]
    public void MultimodalConfig_IsReadThroughItsTextConfig()
    {
        string folder = _temp.Folder("qwen");
        File.WriteAllText(Path.Combine(folder, "config.json"),
            """{ "model_type": "qwen3_5", "text_config": { "hidden_size": 1024, "num_hidden_layers": 24, "bos_token_id": 7, "eos_token_id": [8, 9] } }""");
        var config = ModelFolderFacts.Read(folder).HfConfig!;
        Assert.Equal("qwen3_5", config.ModelType);
        Assert.Equal(1024, config.HiddenSize);
        Assert.Equal(24, config.LayerCount);
        Assert.Equal(7, config.BosTokenId);
        Assert.Equal([8, 9], config.EosTokenIds);
    }

    [Fact]
    public void MalformedOrSpecialConfigs_AreReportedNotRead()
    {
        string folder = _temp.Folder("bad");
        File.WriteAllText(Path.Combine(folder, "config.json"), "{ \"bos_token_id\": 1, ");
        Assert.Equal(0, Syscall.mkfifo(Path.Combine(folder, "genai_config.json"), FilePermissions.S_IRUSR | FilePermissions.S_IWUSR));
        var facts = ModelFolderFacts.Read(folder); // must not block on the FIFO
        Assert.Contains("not valid JSON", facts.HfConfig!.Problem);
        Assert.Contains("FIFO", facts.GenAiConfig!.Problem);
        Assert.Null(facts.BosTokenId);

        // The recognizer uses the same reading and says why the BOS id is missing.
        File.Copy(Fixtures.Export("llama-torch-past", "model.onnx"), Path.Combine(folder, "model.onnx"));
        using var model = ModelReader.Load(Path.Combine(folder, "model.onnx"));
        var hints = StructureRecognizer.Recognize(model).Structure!.Hints.Select(StructureReport.HintText).ToList();
        Assert.Contains(hints, h => h.StartsWith("config.json beside the model is not valid JSON"));
        Assert.Contains(hints, h => h.StartsWith("no bos_token_id found"));
        var text = CliRunner.Run("inspect", Path.Combine(folder, "model.onnx"));
        Assert.Contains("config.json UNUSABLE (is not valid JSON", text.Stdout);
    }

    [Fact]
    public void HubCacheConfigLinks_AreFollowed()
    {
        string blobs = _temp.Folder("blobs");
        string snapshot = _temp.Folder("snapshot");
        File.WriteAllText(Path.Combine(blobs, "c1"), """{ "model_type": "llama", "bos_token_id": 1 }""");
        File.CreateSymbolicLink(Path.Combine(snapshot, "config.json"), "../blobs/c1");
        Assert.Equal((1, "config.json"), ModelFolderFacts.Read(snapshot).BosTokenId);
    }

    public void Dispose() => _temp.Dispose();
}
