using System.Security.Cryptography;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>Saving never destroys an input and never leaves a partial result behind.</summary>
public sealed class SaveSafetyTests : IDisposable
{
    private readonly TempFolder _temp = new("save-safety");

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Copies a fixture folder's model (and data file) into the temp folder: inputs we may try to overwrite.</summary>
    private string CopyFixture(string fixture, params string[] files)
    {
        string folder = _temp.Folder(fixture);
        foreach (string file in files) File.Copy(Fixtures.Export(fixture, file), Path.Combine(folder, file));
        return folder;
    }

    [Fact]
    public void Save_ToTheFileItWasLoadedFrom_IsRefusedAndLeavesItUnchanged()
    {
        string folder = CopyFixture("distilbert-optimum", "model.onnx");
        string path = Path.Combine(folder, "model.onnx");
        string before = Hash(path);
        using var model = ModelReader.Load(path);

        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, path));
        Assert.Contains("loaded from", ex.Message);
        Assert.Equal(before, Hash(path));
        Assert.Equal(["model.onnx"], Directory.GetFiles(folder).Select(Path.GetFileName));
        // Through a different spelling of the same path, too.
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(folder, "..", "distilbert-optimum", "model.onnx")));
        Assert.Equal(before, Hash(path));
    }

    [Fact]
    public void Save_ExternalModelIntoItsFolderWithTheSameDataFileName_IsRefused()
    {
        string folder = CopyFixture("llama-genai-gqa-fp32", "model.onnx", "model.onnx.data");
        string data = Path.Combine(folder, "model.onnx.data");
        string dataBefore = Hash(data);
        using var model = ModelReader.Load(Path.Combine(folder, "model.onnx"));

        var ex = Assert.Throws<ModelSaveException>(() =>
            ModelWriter.Save(model, Path.Combine(folder, "other.onnx"), new SaveOptions { DataFileName = "model.onnx.data" }));
        Assert.Contains("input of this model", ex.Message);
        // The data file as the output model path is refused too.
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, data));

        Assert.Equal(dataBefore, Hash(data));
        Assert.Equal(["model.onnx", "model.onnx.data"], Directory.GetFiles(folder).Select(Path.GetFileName).Order());
        // Same folder, another data file name: allowed, and the input data stays as it was.
        var saved = ModelWriter.Save(model, Path.Combine(folder, "other.onnx"), new SaveOptions { Durable = false });
        Assert.Equal(Path.Combine(folder, "other.onnx.data"), saved.DataPath);
        Assert.Equal(dataBefore, Hash(data));
    }

    [Fact]
    public void Save_DataFileNameThatWouldOverwriteAModelFile_IsRefused()
    {
        string folder = CopyFixture("distilbert-optimum", "model.onnx");
        string path = Path.Combine(folder, "model.onnx");
        string before = Hash(path);
        using var model = ModelReader.Load(path);
        var external = new SaveOptions { Layout = TensorLayout.External };

        // The data file would replace the file the model was loaded from...
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(folder, "copy.onnx"), external with { DataFileName = "model.onnx" }));
        Assert.Contains("loaded from", ex.Message);
        // ...or the model file being written.
        ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(folder, "copy.onnx"), external with { DataFileName = "copy.onnx" }));
        Assert.Contains("is the model file's own name", ex.Message);

        Assert.Equal(before, Hash(path));
        Assert.Equal(["model.onnx"], Directory.GetFiles(folder).Select(Path.GetFileName));
    }

    [Fact]
    public void Save_FailingWhileWritingExternalData_LeavesNoFiles()
    {
        using var model = TinyModel(new GeneratedTensor(TensorDataType.Float, [1024, 64], (offset, destination) =>
        {
            if (offset + destination.Length > 4096) throw new IOException("disk on fire");
            destination.Clear();
        }));
        string folder = _temp.Folder("out");
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(folder, "m.onnx"),
            new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 16 }));
        Assert.Contains("disk on fire", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void Save_FailingAfterTheDataFileIsWritten_LeavesNoFiles()
    {
        // The big tensor goes external first; the small one is embedded while the protobuf is built, and fails.
        using var model = TinyModel(ArrayTensor.Zeros(TensorDataType.Float, 1024, 64),
            new GeneratedTensor(TensorDataType.Float, [64], (_, _) => throw new InvalidOperationException("cannot compute")));
        string folder = _temp.Folder("out");
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(folder, "m.onnx"),
            new SaveOptions { Layout = TensorLayout.External, ExternalThreshold = 1024 }));
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void Save_FailingOverAnExistingFile_KeepsTheOldFile()
    {
        string folder = _temp.Folder("out");
        string path = Path.Combine(folder, "m.onnx");
        File.WriteAllText(path, "previous model");
        using var model = TinyModel(new GeneratedTensor(TensorDataType.Float, [64], (_, _) => throw new InvalidOperationException("cannot compute")));
        Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, path, new SaveOptions { Overwrite = true }));
        Assert.Equal("previous model", File.ReadAllText(path));
        Assert.Equal(["m.onnx"], Directory.GetFiles(folder).Select(Path.GetFileName));
    }

    [Fact]
    public void Save_WithMissingExternalData_IsRefusedBeforeWriting()
    {
        string folder = CopyFixture("llama-genai-mha-fp16", "model.onnx");
        using var model = ModelReader.Load(Path.Combine(folder, "model.onnx"), new LoadOptions { RequireExternalData = false });
        string output = _temp.Folder("out");
        var ex = Assert.Throws<ModelSaveException>(() => ModelWriter.Save(model, Path.Combine(output, "m.onnx")));
        Assert.Contains("unavailable", ex.Message);
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    /// <summary>y = (x + w0) [+ w1]: a model whose initializers are the given tensors (float, length = last dim).</summary>
    internal static Model TinyModel(params Tensor[] weights)
    {
        var graph = new Graph("tiny");
        long width = weights[0].Dims[^1];
        var x = graph.AddInput("x", TensorDataType.Float, [new Dim(width)]);
        Value current = x;
        for (int i = 0; i < weights.Length; i++)
        {
            var w = graph.AddInitializer($"w{i}", weights[i]);
            var add = new Node("", "Add", [current, w], [$"sum{i}"]);
            graph.Append(add);
            current = add.Outputs[0]!;
        }
        graph.AddOutput(current);
        var model = new Model(graph, irVersion: 8);
        model.OpsetImports.Add(new OpsetId("", 17));
        return model;
    }

    public void Dispose() => _temp.Dispose();
}
